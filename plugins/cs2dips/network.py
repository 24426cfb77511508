"""The coupled spatial and spectral deep image priors of CS2DIPs (Fang et al., TIP 33, 2024).

Re-implemented from reading ``Ambitionfy/CS2DIPs`` ``modules/model.py`` (classes ``GDIP2d``,
``GDIP1d``, ``CGDIP``, ``SAU``, ``DAU``, ``DCNBlock``, ``Crop``/``concat``) and
``modules/common.py`` (conv/BN/LeakyReLU(0.2) helpers); no code was copied.  The
structure, layer by layer:

* :class:`CoupledBranch` — one DIP.  A *guide* encoder–decoder (the photograph for the
  spatial DIP, the LR cube for the spectral DIP) feeds attention units that steer a
  decoder driven by a trainable *noise* input.  The guide goes down ``levels`` times
  through one shared stride-2 block, through four residual blocks at the bottom, and
  back up through shared nearest-upsampling blocks with shared skip projections.  The
  noise path starts at the bottom, alternates four residual blocks with the shared
  :class:`DAU` (modulated by the four bottom guide features), and climbs back with the
  shared :class:`SAU` (modulated by the encoder and decoder guide features of each
  level) plus a shared residual 1×1 refinement; a 1×1 convolution and ReLU give ``rank``
  non-negative maps.
* Spatial DIP (2-D, ``levels = 5``): guide = the photograph ``(3, H, W)``; the bottom
  residual blocks are *deformable* 3×3 convolutions (mmcv ``DeformConv2dPack`` in the
  reference, here :class:`DeformConv2d`).  Output ``(rank, H, W)``.
* Spectral DIP (1-D, ``levels = 3``): guide = the LR cube with its *pixels as channels*
  and the elements as the 1-D axis, ``(1, h·w, B)``; the bottom blocks are 1×1
  convolutions (as in the reference's ``GDIP1d``).  Output ``(rank, B)``.
* :class:`CS2DIP` — the product of rank-``r`` factors: the spatial factor is divided by
  its sum over the rank axis (``S / (Σ_k S + 1e-7)``, abundance-like, non-negative and
  summing to one per pixel), the spectral factor is the non-negative ReLU output, and
  ``Z[b, y, x] = Σ_k S[k, y, x] · A[k, b]``.

Departures from the reference (each needed here, none changes the model):

* Deformable convolution: mmcv does not install beside this CPU torch and torchvision
  does not import, so :func:`deform_conv2d` is written in plain PyTorch — bilinear
  sampling of the input at the offset tap positions with ``grid_sample`` (zeros outside,
  as mmcv's ``deformable_im2col`` bilinear), then one matrix product with the weight.
  Like ``DeformConv2dPack``: offsets from a zero-initialised 3×3 convolution (with bias),
  DCNv1 (no modulation mask), one deformable group, no bias on the deformable weight,
  Kaiming-uniform weight.  The tests check it against a direct loop over output pixels
  and taps and against ``conv2d`` at zero offset.
* Depth: batch norm in training mode needs more than one value per channel, so a bottom
  level of 1×1 (spatial) or length 1 (spectral) fails in the reference (e.g. 8 elements
  with 3 spectral levels).  :func:`usable_levels` lowers the number of levels to the
  largest that leaves at least two values at the bottom; the published depths are kept
  whenever they fit (21 elements, any HR size ≥ 33 px).
* The reference's unused ``youtput`` layers are not built.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# --- deformable convolution ------------------------------------------------------------

def deform_conv2d(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                  padding: int = 1, stride: int = 1, dilation: int = 1) -> torch.Tensor:
    """Deformable convolution (Dai et al., ICCV 2017; DCNv1, one deformable group).

    ``x`` ``(N, C, H, W)``; ``weight`` ``(O, C, kh, kw)``; ``offset``
    ``(N, 2·kh·kw, Ho, Wo)`` in pixels, ordered ``(dy₀, dx₀, dy₁, dx₁, …)`` over the taps
    in row-major order (the layout of mmcv and torchvision).  Tap ``k = (i, j)`` of output
    pixel ``(p, q)`` reads ``x`` bilinearly at ``(p·stride − padding + i·dilation + dy,
    q·stride − padding + j·dilation + dx)``, with zeros outside the image.  Returns
    ``(N, O, Ho, Wo)``; differentiable in ``x``, ``offset`` and ``weight``.
    """
    n, c, h, w = x.shape
    o, c_w, kh, kw = weight.shape
    if c_w != c:
        raise ValueError(f"deform_conv2d: input has {c} channels, weight expects {c_w}")
    ho = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    taps = kh * kw
    if offset.shape != (n, 2 * taps, ho, wo):
        raise ValueError(f"deform_conv2d: offset must be {(n, 2 * taps, ho, wo)}, "
                         f"found {tuple(offset.shape)}")
    off = offset.reshape(n, taps, 2, ho, wo)
    kwargs = {"device": x.device, "dtype": x.dtype}
    tap_y = (torch.arange(kh, **kwargs) * dilation).repeat_interleave(kw).view(1, taps, 1, 1)
    tap_x = (torch.arange(kw, **kwargs) * dilation).repeat(kh).view(1, taps, 1, 1)
    row = (torch.arange(ho, **kwargs) * stride - padding).view(1, 1, ho, 1)
    col = (torch.arange(wo, **kwargs) * stride - padding).view(1, 1, 1, wo)
    py = row + tap_y + off[:, :, 0]  # (N, taps, Ho, Wo), pixel units
    px = col + tap_x + off[:, :, 1]
    # grid_sample with align_corners=False puts pixel i at (2i + 1)/size − 1; this form
    # also holds for a 1-pixel-wide input, where align_corners=True would divide by zero.
    grid = torch.stack(((2 * px + 1) / w - 1, (2 * py + 1) / h - 1), dim=-1)
    cols = F.grid_sample(x, grid.reshape(n, taps * ho, wo, 2), mode="bilinear",
                         padding_mode="zeros", align_corners=False)  # (N, C, taps·Ho, Wo)
    cols = cols.reshape(n, c * taps, ho * wo)  # channel-major, tap-minor: as weight.view
    return (weight.reshape(o, c * taps) @ cols).reshape(n, o, ho, wo)


class DeformConv2d(nn.Module):
    """A 3×3 deformable convolution that predicts its own offsets (mmcv ``DeformConv2dPack``).

    The offsets come from an ordinary convolution of the input with the same kernel,
    stride and padding, initialised to zero (so the layer starts as a plain convolution);
    the deformable weight has no bias and a Kaiming-uniform initialisation, as mmcv's.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 padding: int = 1, stride: int = 1):
        super().__init__()
        self.padding, self.stride = padding, stride
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")
        self.offset = nn.Conv2d(in_channels, 2 * kernel_size * kernel_size, kernel_size,
                                stride=stride, padding=padding, bias=True)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return deform_conv2d(x, self.offset(x), self.weight, self.padding, self.stride)


# --- building blocks -------------------------------------------------------------------

class _Pointwise:
    """A 1×1 convolution computed as one matrix product when the batch is a single image.

    Same parameters and initialisation as the ``nn.Conv{1,2}d`` it extends; for batch 1
    (always the case here) ``W @ x.reshape(C, -1)`` skips the generic convolution path,
    which on CPU allocates and fills im2col buffers (about 20 % of a 1×1 layer's time at
    512² × 16 channels).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != 1:
            return super().forward(x)
        w = self.weight.reshape(self.out_channels, self.in_channels)
        flat = x.reshape(self.in_channels, -1)
        y = w @ flat if self.bias is None else torch.addmm(self.bias[:, None], w, flat)
        return y.reshape(1, self.out_channels, *x.shape[2:])


class Pointwise2d(_Pointwise, nn.Conv2d):
    def __init__(self, cin: int, cout: int, bias: bool = True):
        super().__init__(cin, cout, 1, bias=bias)


class Pointwise1d(_Pointwise, nn.Conv1d):
    def __init__(self, cin: int, cout: int, bias: bool = True):
        super().__init__(cin, cout, 1, bias=bias)


def _conv(dims: int):
    return nn.Conv2d if dims == 2 else nn.Conv1d


def pointwise(cin: int, cout: int, dims: int, bias: bool = True) -> nn.Module:
    return (Pointwise2d if dims == 2 else Pointwise1d)(cin, cout, bias=bias)


def conv_bn_act(cin: int, cout: int, dims: int, kernel: int = 1, stride: int = 1) -> nn.Sequential:
    """Convolution (zero padding ``(k − 1)/2``, bias), batch norm, LeakyReLU(0.2).

    The activation works in place, as the reference's: autograd then keeps one tensor
    fewer per block, which matters at full resolution.
    """
    bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    if kernel == 1 and stride == 1:
        conv = pointwise(cin, cout, dims)
    else:
        conv = _conv(dims)(cin, cout, kernel, stride, padding=(kernel - 1) // 2, bias=True)
    return nn.Sequential(conv, bn(cout), nn.LeakyReLU(0.2, inplace=True))


def centre_crop(a: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Crop ``a``'s spatial axes (after batch and channel) to ``min(a, like)``, centred.

    Stride-2 convolutions round sizes up and upsampling doubles them, so features of
    one level can differ by a pixel; the reference's ``Crop`` reconciles them this way.
    """
    index = [slice(None), slice(None)]
    for sa, sb in zip(a.shape[2:], like.shape[2:]):
        size = min(sa, sb)
        start = (sa - size) // 2
        index.append(slice(start, start + size))
    return a[tuple(index)]


def concat(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cat([centre_crop(a, b), centre_crop(b, a)], dim=1)


def channel_pool_gate(features: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """``sigmoid(conv([max_c f, mean_c f]))``: a one-channel spatial attention map."""
    pooled = torch.cat([features.amax(dim=1, keepdim=True), features.mean(dim=1, keepdim=True)], dim=1)
    return torch.sigmoid(conv(pooled))


class ResidualBlock(nn.Module):
    """``x + act(bn(conv(x)))`` with a deformable 3×3 (2-D) or a plain 1×1 (1-D) convolution."""

    def __init__(self, channels: int, dims: int, deformable: bool):
        super().__init__()
        bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        conv = DeformConv2d(channels, channels) if deformable else pointwise(channels, channels, dims)
        self.body = nn.Sequential(conv, bn(channels), nn.LeakyReLU(0.2, inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class DAU(nn.Module):
    """Bottom-level attention: guide feature ``g`` modulates the noise feature ``z``.

    ``m = z + proj(z) ⊙ proj(g)``;  ``out = (1 + gate(proj(g))) ⊙ m`` with the gate of
    :func:`channel_pool_gate` (reference ``DAU``).
    """

    def __init__(self, channels: int, dims: int):
        super().__init__()
        self.guide = conv_bn_act(channels, channels, dims)
        self.noise = conv_bn_act(channels, channels, dims)
        self.gate = pointwise(2, 1, dims, bias=False)

    def forward(self, g: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        ag = self.guide(g)
        zz = self.noise(z)
        m = centre_crop(zz, ag) * centre_crop(ag, zz) + z
        return channel_pool_gate(ag, self.gate) * m + m


class SAU(nn.Module):
    """Up-sampling attention: the noise feature ``z`` goes up one level, modulated by the
    encoder feature ``e`` and the decoder feature ``d`` of the guide at that level.

    ``p = up₁(z) ⊙ proj₁(e)``, ``q = up₂(z) ⊙ proj₂(d)``, ``f = fuse([p, q])``,
    ``out = gate(f) ⊙ f`` (reference ``SAU``; ``up`` = 2× bilinear/linear then 1×1 block).
    """

    def __init__(self, channels: int, dims: int):
        super().__init__()
        mode = "bilinear" if dims == 2 else "linear"
        self.encoder = conv_bn_act(channels, channels, dims)
        self.decoder = conv_bn_act(channels, channels, dims)
        self.up_e = nn.Sequential(nn.Upsample(scale_factor=2, mode=mode),
                                  conv_bn_act(channels, channels, dims))
        self.up_d = nn.Sequential(nn.Upsample(scale_factor=2, mode=mode),
                                  conv_bn_act(channels, channels, dims))
        self.fuse = conv_bn_act(2 * channels, channels, dims)
        self.gate = pointwise(2, 1, dims, bias=False)

    def forward(self, e: torch.Tensor, d: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        e, d = self.encoder(e), self.decoder(d)
        z1, z2 = self.up_e(z), self.up_d(z)
        p = centre_crop(z1, e) * centre_crop(e, z1)
        q = centre_crop(z2, d) * centre_crop(d, z2)
        f = self.fuse(concat(p, q))
        return channel_pool_gate(f, self.gate) * f


class CoupledBranch(nn.Module):
    """One guided DIP (reference ``GDIP2d`` for ``dims=2``, ``GDIP1d`` for ``dims=1``).

    ``forward(guide, noise)``: ``guide`` ``(1, guide_channels, *size)``, ``noise``
    ``(1, noise_channels, *bottom)`` with ``bottom = ceil(size / 2**levels)``; returns
    ``(1, out_channels, *size)``, non-negative.
    """

    def __init__(self, dims: int, guide_channels: int, noise_channels: int, out_channels: int,
                 channels: int, skip_channels: int, levels: int, deformable: bool):
        super().__init__()
        if levels < 1:
            raise ValueError(f"a DIP branch needs at least one level, found {levels}")
        self.levels = levels
        c, s = channels, skip_channels
        self.guide_in = conv_bn_act(guide_channels, c, dims)
        self.down = nn.Sequential(conv_bn_act(c, c, dims, kernel=3, stride=2), conv_bn_act(c, c, dims))
        self.skip = conv_bn_act(c, s, dims)
        self.up_first = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv_bn_act(c, c, dims))
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv_bn_act(c + s, c, dims))
        self.guide_blocks = nn.ModuleList([ResidualBlock(c, dims, deformable) for _ in range(4)])
        self.noise_in = conv_bn_act(noise_channels, c, dims)
        self.noise_blocks = nn.ModuleList([ResidualBlock(c, dims, deformable) for _ in range(4)])
        self.dau = DAU(c, dims)
        self.sau = SAU(c, dims)
        self.refine = conv_bn_act(c, c, dims)
        self.out = nn.Sequential(pointwise(c, out_channels, dims), nn.ReLU())

    def forward(self, guide: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        # guide encoder: one shared down block applied `levels` times
        enc = [self.guide_in(guide)]
        for _ in range(self.levels):
            enc.append(self.down(enc[-1]))
        bottom = []
        g = enc[-1]
        for block in self.guide_blocks:
            g = block(g)
            bottom.append(g)
        # guide decoder: dec[l] lives at level l
        dec = {self.levels - 1: self.up_first(g)}
        for level in range(self.levels - 1, 0, -1):
            dec[level - 1] = self.up(concat(dec[level], self.skip(enc[level])))
        # noise path, steered by the guide features
        z = self.noise_in(noise)
        for block, g in zip(self.noise_blocks, bottom):
            z = self.dau(g, block(z))
        for level in range(self.levels - 1, -1, -1):
            z = self.sau(enc[level], dec[level], z)
            z = self.refine(z) + z
        return self.out(z)


def usable_levels(size: tuple[int, ...], wanted: int) -> int:
    """The largest depth ``≤ wanted`` whose bottom level keeps at least two values.

    Each stride-2 block maps a length ``n`` to ``ceil(n / 2)``.  Batch norm in training
    mode needs more than one value per channel at the bottom (batch size 1 here).
    """
    for levels in range(wanted, 0, -1):
        if math.prod(math.ceil(n / 2**levels) for n in size) >= 2:
            return levels
    return 0


def bottom_shape(size: tuple[int, ...], levels: int) -> tuple[int, ...]:
    return tuple(math.ceil(n / 2**levels) for n in size)


class CS2DIP(nn.Module):
    """Coupled spatial and spectral DIPs (reference ``CGDIP``).

    ``forward(lr_cube, spectral_noise, msi, spatial_noise)`` with ``lr_cube``
    ``(1, h·w, B)``, ``msi`` ``(1, bands, H, W)`` returns ``(Z, S, A)``: the HR cube ``Z``
    ``(B, H, W)`` and its factors, spatial ``S`` ``(rank, H, W)`` (non-negative, summing
    to one over ``rank`` at every pixel up to the 1e-7 guard) and spectral ``A``
    ``(rank, B)`` (non-negative).
    """

    def __init__(self, n_elements: int, n_bands: int, n_lr_pixels: int, hr_shape: tuple[int, int],
                 rank: int, channels: int, skip_channels: int, spatial_noise_channels: int,
                 spectral_noise_channels: int, spatial_levels: int, spectral_levels: int):
        super().__init__()
        self.n_elements, self.hr_shape, self.rank = n_elements, tuple(hr_shape), rank
        self.spectral = CoupledBranch(1, n_lr_pixels, spectral_noise_channels, rank, channels,
                                      skip_channels, spectral_levels, deformable=False)
        self.spatial = CoupledBranch(2, n_bands, spatial_noise_channels, rank, channels,
                                     skip_channels, spatial_levels, deformable=True)

    def factors(self, lr_cube, spectral_noise, msi, spatial_noise):
        a = self.spectral(lr_cube, spectral_noise).reshape(self.rank, self.n_elements)
        s = self.spatial(msi, spatial_noise).reshape(self.rank, *self.hr_shape)
        s = s / (s.sum(dim=0) + 1e-7)
        return s, a

    def forward(self, lr_cube, spectral_noise, msi, spatial_noise):
        s, a = self.factors(lr_cube, spectral_noise, msi, spatial_noise)
        # one (B × r) · (r × H·W) product (einsum chose a batched, copying layout here)
        z = (a.T @ s.reshape(self.rank, -1)).reshape(self.n_elements, *self.hr_shape)
        return z, s, a
