"""The shared pipeline of the pretrained single-image SR models (torch imported here).

See the package docstring for what the pipeline does and why; this module has the code:
:func:`load_network` (a checkpoint → a :class:`Network`), :func:`super_resolve` (element
maps → super-resolved maps) and :func:`run_pretrained` (the method ``run``).
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import maxrf_bench as mb

from ._spandrel import import_spandrel
from .edsr import edsr_from_state_dict, unwrap_state_dict
from .weights import RELEASES, load_checkpoint, require_weights


@dataclass
class Network:
    """A loaded SR network: ``module`` maps ``(1, channels, h, w)`` in [0, 1] to
    ``(1, c_out, scale·h, scale·w)``; inputs smaller than ``min_size`` are padded first."""

    module: nn.Module
    scale: int
    channels: int
    min_size: int = 1
    multiple_of: int = 1
    label: str = ""


@contextmanager
def _quiet_meshgrid():
    """spandrel's HAT/Swin2SR call ``torch.meshgrid`` without ``indexing`` (the old default,
    "ij", which they mean); torch warns about it on every model build.  Not the user's
    business, so that one warning is silenced here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.meshgrid", category=UserWarning)
        yield


resolve_device = mb.torch_device


def _spandrel_network(method: str, obj) -> Network:
    arch_id = RELEASES[method].architecture
    spandrel = import_spandrel(method)
    if not isinstance(obj, dict):
        raise mb.ConfigError(f"{method}.weights: expected a state dict, found {type(obj).__name__}")
    sd = spandrel.canonicalize_state_dict(obj)  # unwraps params_ema / params, strips module.
    # the architecture spandrel itself would load this file as (its detection order)
    support = next((a for a in spandrel.MAIN_REGISTRY.architectures("detection") if a.detect(sd)),
                   None)
    if support is None or str(support.architecture.id) != arch_id:
        what = (f"a {support.architecture.name} checkpoint" if support is not None
                else "no checkpoint of an architecture spandrel knows")
        raise mb.ConfigError(f"{method}.weights is {what}, not {arch_id}; expected e.g. "
                             f"{RELEASES[method].file_for(4)}")
    try:
        with _quiet_meshgrid():
            desc = support.architecture.load(sd)
    except Exception as exc:  # noqa: BLE001 - a malformed checkpoint is the user's input
        raise mb.ConfigError(f"{method}.weights: spandrel could not build {arch_id} from it: "
                             f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
                             ) from None
    req = desc.size_requirements
    return Network(desc.model, int(desc.scale), int(desc.input_channels), int(req.minimum),
                   int(req.multiple_of), f"{arch_id} ({', '.join(desc.tags)})")


def load_network(method: str, weights, scale: int) -> Network:
    """The network of ``method`` from the weights file, checked against the run's ``scale``."""
    path = require_weights(method, weights, scale)
    obj = load_checkpoint(method, path)
    if method == "car":
        sd = unwrap_state_dict(obj)
        if not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise mb.ConfigError(f"car.weights {str(path)!r}: expected a dict of tensors")
        model = edsr_from_state_dict(sd)
        net = Network(model, model.scale, 3, label=f"EDSR ({len(model.body) - 1} blocks, "
                                                   f"{model.head[0].out_channels} features)")
    else:
        net = _spandrel_network(method, obj)
    if net.scale != scale:
        release = RELEASES[method]
        hint = (f"use {release.file_for(scale)} for this scale, or run with --scale {net.scale}"
                if scale in release.scales else f"run with --scale {net.scale}")
        raise mb.ConfigError(f"{method}.weights {path.name!r} is a x{net.scale} model but this "
                             f"run's scale is x{scale}; {hint}")
    return net


def _pad_to(x: torch.Tensor, min_size: int, multiple_of: int) -> torch.Tensor:
    """Pad bottom/right so both sides are ≥ ``min_size`` and multiples of ``multiple_of``
    (reflection where the map is large enough, as HAT/Swin2SR pad, else edge replication)."""
    h, w = x.shape[-2:]
    th = max(h, min_size)
    tw = max(w, min_size)
    th += -th % multiple_of
    tw += -tw % multiple_of
    if (th, tw) == (h, w):
        return x
    mode = "reflect" if th - h < h and tw - w < w else "replicate"
    return F.pad(x, (0, tw - w, 0, th - h), mode=mode)


def _forward(net: Network, x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    with _quiet_meshgrid():
        y = net.module(_pad_to(x, net.min_size, net.multiple_of))
    s = net.scale
    return y[..., : s * h, : s * w]


def _tiled(net: Network, x: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
    """The SR of ``x`` ``(1, C, h, w)``, tile by tile when it is larger than ``tile``.

    Each tile is run with ``overlap`` LR pixels of context on every side (clipped at the
    border) and only its own area is kept, as in HAT's tile mode; ``tile = 0`` runs the
    whole map at once.  A map no larger than one tile is run whole, so the result is the
    authors' whole-image inference.
    """
    h, w = x.shape[-2:]
    if tile <= 0 or (h <= tile and w <= tile):
        return _forward(net, x)
    s = net.scale
    out = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            py0, px0 = max(y0 - overlap, 0), max(x0 - overlap, 0)
            py1, px1 = min(y1 + overlap, h), min(x1 + overlap, w)
            y = _forward(net, x[..., py0:py1, px0:px1])
            if out is None:
                out = x.new_empty((1, y.shape[1], s * h, s * w))
            out[..., s * y0:s * y1, s * x0:s * x1] = y[..., s * (y0 - py0):s * (y1 - py0),
                                                        s * (x0 - px0):s * (x1 - px0)]
    return out


@torch.inference_mode()
def super_resolve(net: Network, maps_lr: np.ndarray, *, device: torch.device, tile: int = 256,
                  tile_overlap: int = 32, progress=None, names=None) -> np.ndarray:
    """Super-resolve every element map with ``net``: ``(E, h, w)`` → ``(E, s·h, s·w)`` float32.

    Per element ``k``: ``lo, hi`` = min and max of the LR map; the network sees
    ``(m − lo) / (hi − lo)`` in [0, 1] replicated to its input channels (3 for every
    released model), its output channels are averaged, and ``lo + (hi − lo) · mean`` is
    returned, in the units of ``maps_lr``.  A constant map (``hi = lo``) has no [0, 1]
    image; it is returned constant.  The output is not clamped (see the package docstring).
    """
    maps_lr = np.asarray(maps_lr, dtype=np.float64)
    n, h, w = maps_lr.shape
    s = net.scale
    out = np.empty((n, s * h, s * w), dtype=np.float32)
    net.module.to(device).eval()
    for k in range(n):
        lo, hi = float(maps_lr[k].min()), float(maps_lr[k].max())
        span = hi - lo
        if not span > 1e-12 * max(1.0, abs(hi)):
            out[k] = lo
        else:
            x = torch.from_numpy(((maps_lr[k] - lo) / span).astype(np.float32)).to(device)
            x = x.expand(1, net.channels, h, w).contiguous()
            y = _tiled(net, x, tile, tile_overlap).mean(dim=1)[0]
            out[k] = (lo + span * y.double()).cpu().numpy()
        if progress is not None:
            progress(k + 1, n, f"{net.label} {names[k] if names else k}")
    return out


def run_pretrained(method: str, inputs: mb.MethodInputs, *, weights, tile: int,
                   tile_overlap: int) -> np.ndarray:
    """``run`` of ``car``, ``hat`` and ``swin2sr``: ``(element, y, x)`` in the units of
    ``inputs.maps_lr`` (normalised)."""
    if int(tile) < 0 or int(tile_overlap) < 0:
        raise mb.ConfigError(f"{method}.tile and {method}.tile_overlap must be ≥ 0 (LR pixels; "
                             f"tile 0 = whole map), found {tile} and {tile_overlap}")
    scale = int(inputs.operator.scale)
    net = load_network(method, weights, scale)
    device = resolve_device(inputs.device)
    sr = super_resolve(net, inputs.maps_lr.values, device=device, tile=int(tile),
                       tile_overlap=int(tile_overlap), progress=inputs.progress,
                       names=inputs.elements)
    return inputs.as_hr(sr)
