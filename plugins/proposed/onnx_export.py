"""Export of the proposed method's trained generator to one self-contained ONNX file.

The exported graph is the whole inference pipeline of the paper's Fig. 1(a), in the
normalised units the method works in::

    maps_lr (1, B, h, w) ──bilinear ×s (Resize, half-pixel)──┐
                                                             ├─ X = [Y_lr↑ ; Z]  (1, B+3, H, W)
    rgb     (1, 3, H, W) ────────────────────────────────────┘
    X ──(H·W, B+3) pixel rows──► generator g (Eqs. 7–8, per pixel) ──► X̂ ──► Ŷ = X̂[:, :B] (Eq. 9)
    Ŷ ──► Proj(Ŷ) = Ŷ − nearest_up(blockmean(Ŷ) − Y_lr)   (Eq. 10, block-mean operator)
    ──► maps (1, B, H, W)

``H = s·h`` and ``W = s·w`` are dynamic.  The proposed generator is exported in its
:class:`FusedLista` form as 1×1 convolutions on the ``(1, C, H, W)`` image, as the paper
implements Eqs. 7–8: in onnxruntime on the CPU this ran 15–20 % more pixels per CPU-second
than ``Gemm`` on a pixels × channels reshape (``tests/benchmarks/bench_infer.py``).  Any
other per-pixel generator is exported on the pixels × channels reshape.

Why the tiles of :mod:`maxrf_infer` are exact: the bilinear upsampling of an LR pixel
reads only its 4-neighbours (halo of 1 LR pixel), the generator is per pixel
(``kernel = 1``) or reads ``X`` within its ``halo`` of HR pixels (``kernel = k``: ``k − 1``
for ``context="all"``, ``(k − 1)/2`` for ``"photo"``; ``X`` is edge-padded by that much
inside the graph, then valid convolutions), and the projection of a block uses only that
block.  :func:`tile_halo_lr` gives the LR halo a tile needs for these reaches (1 up to a
reach of 2 HR pixels at scale 4, 2 for a reach of 4); the metadata records
it (``halo_lr``), and the runtime reads every tile with that halo, so tiles reproduce the
whole image (at the scan's edges the tile's own edge padding is the whole image's).
The graph outputs only the core of what it is given (metadata ``margin_lr = halo_lr``):
the halo feeds the upsampling and the generator's reach but gets no output of its own, so
no piece of a tiled run computes pixels that are then thrown away; at the scan's edges the
runtime edge-pads the input by the margin (the same values the bilinear clamp and the
replicate padding give), so the whole image is ``maps`` of the edge-padded scan.

A generator trained with ``register = "lr"`` (ours) saw the photograph sampled by the
registration field estimated before training: the field goes into the metadata
(``photo_field``, :mod:`maxrf_infer.photo`), and the runtime samples the photograph the same
way before the graph sees it (the graph itself takes the registered photograph).

A generator trained with ``recorrupt > 0`` (ours; the ``ctx-quickscan`` preset) gives the mean
of the network over recorrupted LR inputs ``Y + α·σ·n_k``: the graph is exported without the
projection, and the metadata ``recorrupt`` (:func:`recorrupt_record`, :mod:`maxrf_infer.recorrupt`)
tells the runtime the draws, their counter-based noise (the run draws it the same way), what
``σ`` depends on and whether to project the average.  Every export also records the run's LR
noise model (``lr_noise``), which ``maxrf-infer --noise-aware`` (the host's ``+W``) needs.

The graph is exported with the TorchScript exporter (``dynamo=False``) so the weights are
embedded (no ``.onnx.data`` side file) and the IR version stays one onnxruntime ≥ 1.16
reads.  The Gaussian beam-spot operator is refused: its exact projection (a periodic
Fourier solve over the whole scan) is global, so it can neither be tiled nor streamed.
"""
from __future__ import annotations

import io
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

import maxrf_bench as mb

#: ONNX operator set of the exported graph (Resize half_pixel, AveragePool: opset ≥ 11).
OPSET = 17
#: Highest IR version we write: onnxruntime 1.16 reads IR ≤ 9, 1.31 reads ≤ 13.
MAX_IR_VERSION = 9
#: LR pixels a tile must read beyond its edge for a per-pixel generator (bilinear, 2-tap).
HALO_LR = 1


def tile_halo_lr(reach: int, scale: int) -> int:
    """The smallest LR halo (≥ 1) with which a tile's core equals the whole-image output,
    for a generator that reads ``X`` within ``reach`` HR pixels (its ``halo``: 0 per pixel,
    ``k − 1`` for k×k analysis and synthesis, ``(k − 1)/2`` for the ``photo`` context).

    The core's first HR row ``a·s`` needs ``X`` from row ``a·s − R``, whose bilinear value
    reads LR row ``a + ⌊p⌋``, ``p = (½ − R)/s − ½``; the last row ``b·s − 1`` needs ``X`` to
    row ``b·s − 1 + R``, which reads LR rows up to ``b + ⌊q⌋ + 1``, ``q = (R − ½)/s − ½``
    (only ``b + ⌊q⌋`` when ``q`` is an integer: the second tap has weight 0).  The halo
    must hold those LR rows and the generator's HR reach itself (``halo·s ≥ R``).
    Checked against a brute-force search in ``tests/test_export.py``.
    """
    from fractions import Fraction

    reach, s = int(reach), int(scale)
    p = Fraction(1, 2 * s) - Fraction(reach, s) - Fraction(1, 2)
    q = Fraction(2 * reach - 1, 2 * s) - Fraction(1, 2)
    top = -math.floor(p)
    bottom = math.floor(q) + (1 if q != math.floor(q) else 0) + 1
    return max(HALO_LR, -(-reach // s), top, bottom)
#: Names of the graph's inputs and output (the runtime relies on them).
INPUT_LR, INPUT_RGB, OUTPUT = "maps_lr", "rgb", "maps"
FORMAT = "maxrf-sr-onnx/1"


class SuperResolvePipeline(torch.nn.Module):
    """Fig. 1(a): bilinear upsampling, the per-pixel generator, slicing, projection.

    ``forward(maps_lr, rgb)``: ``maps_lr`` ``(1, B, h, w)`` normalised LR maps, ``rgb``
    ``(1, 3, s·h, s·w)`` in [0, 1]  →  ``(1, B, s·h, s·w)`` normalised HR maps.
    ``margin_lr = m > 0``: the output is only the core ``(1, B, s·(h−2m), s·(w−2m))``; the
    ``m`` LR pixels around it are the halo the upsampling and the generator read, so the
    network runs on the core's pixels only (and its reach), never on pixels whose output a
    tiled caller throws away.  The whole image is the output of the input edge-padded by
    ``m`` (``np.pad(..., mode="edge")``, what the bilinear clamp and the replicate padding
    do at the edges anyway).
    ``generator`` maps pixel rows ``(N, B+3)`` to ``X̂`` ``(N, B+3)`` (before projection) or
    directly to ``Ŷ`` ``(N, B)`` (:class:`FusedLista`).
    """

    def __init__(self, generator: torch.nn.Module, n_elements: int, scale: int,
                 projection: bool = True, margin_lr: int = 0):
        super().__init__()
        self.generator = generator
        self.n_elements = int(n_elements)
        self.scale = int(scale)
        self.projection = bool(projection)
        self.margin_lr = int(margin_lr)

    def forward(self, maps_lr: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        s, b, m = self.scale, self.n_elements, self.margin_lr
        reach = int(getattr(self.generator, "halo", 0))
        # X = [bilinear-upsampled Y_lr ; Z]; half-pixel centres as mb.upsample(..., "bilinear")
        up = F.interpolate(maps_lr, scale_factor=float(s), mode="bilinear", align_corners=False)
        if m:  # ``margin_lr``: the output is the core; the margin feeds the generator's reach
            if reach > m * s:
                raise ValueError(f"margin_lr {m} is less than the generator's reach {reach} HR pixels")
            x = torch.cat([_crop(up, m * s - reach), _crop(rgb, m * s - reach)], dim=1)
            x_core, rgb_reach = _crop(x, reach), _crop(rgb, m * s - reach)
            maps_lr = _crop(maps_lr, m)
        else:
            x = torch.cat([up, rgb], dim=1)                 # (1, B+3, H, W)
            x_core, rgb_reach = x, None
        if (hasattr(self.generator, "forward_photo") and self.generator.kernel > 1
                and self.generator.context == "photo"):
            if rgb_reach is None:                           # k×k on the photograph only: pad it
                rgb_reach = F.pad(rgb, (reach, reach, reach, reach), mode="replicate")
            y_hat = self.generator.forward_photo(x_core, rgb_reach)
        elif hasattr(self.generator, "forward_image"):      # convolutions on the image
            if reach and not m:                             # k×k: edge-pad X by the reach
                x = F.pad(x, (reach, reach, reach, reach), mode="replicate")
            y_hat = self.generator.forward_image(x if reach else x_core)[:, :b]  # Eq. 9
        else:
            _, c, h, w = x_core.shape
            rows = x_core[0].reshape(c, h * w).transpose(0, 1)  # (H·W, B+3) pixel rows
            x_hat = self.generator(rows)
            y_hat = x_hat if x_hat.shape[1] == b else x_hat[:, :b]  # Eq. 9: Ŷ = X̂[0:B]
            y_hat = y_hat.transpose(0, 1).reshape(1, b, h, w)
        if not self.projection:
            return y_hat
        # Eq. 10 with the block-mean operator: Ŷ − nearest_up(blockmean(Ŷ) − Y_lr)
        residual = F.avg_pool2d(y_hat, kernel_size=s, stride=s) - maps_lr
        return y_hat - F.interpolate(residual, scale_factor=float(s), mode="nearest")


def _crop(t: torch.Tensor, n: int) -> torch.Tensor:
    """``t`` without ``n`` pixels on each side of its last two axes."""
    return t[..., n:-n, n:-n] if n else t


class FusedLista(torch.nn.Module):
    """The trained LISTA generator (Eqs. 7–9) rewritten for inference, same function.

    Eq. 7 as trained is ``σ(A − A Wᵀ + X' Sᵀ − λ)`` on the standardised input
    ``X' = (X − o) / σ_X`` (the generator's ``input_offset``/``input_scale``), i.e. two
    products and four element-wise passes over the activations per layer.  With the
    constants folded it is ``σ(A (I − W)ᵀ + (X S'ᵀ − λ'))``, ``S' = S diag(1/σ_X)``,
    ``λ' = λ + S (o/σ_X)``: two ``Gemm`` (the second takes the first as its bias) and one
    activation, which onnxruntime fuses into the ``Gemm``.  Eq. 8 keeps only the ``B``
    rows of ``D`` that Eq. 9 keeps (``Ŷ = X̂[0:B]``): the RGB channels ``Ẑ`` (a training
    target only) are never computed.  ``forward`` maps pixel rows ``(N, C)`` to ``Ŷ``
    ``(N, B)``; ``forward_image`` does the same with 1×1 convolutions on ``(1, C, H, W)``.

    ``kernel = k > 1``: the same folding on k×k kernels (``S' = S diag(1/σ_X)`` per input
    channel, ``λ' = λ + Σ_{c,taps} S'·o`` — exact because ``X`` is edge-padded, never
    zero-padded); ``forward_image`` takes ``X`` padded by the generator's ``halo`` and runs
    valid convolutions (``context="photo"``: k×k on the photograph's channels, the centre
    tap on the maps, 1×1 synthesis; ``forward`` on rows exists for ``k = 1`` only).
    """

    def __init__(self, generator: torch.nn.Module):
        super().__init__()
        b = int(generator.n_elements)
        c = int(generator.S[0].shape[1])
        self.kernel = int(getattr(generator, "kernel", 1))
        self.halo = int(getattr(generator, "halo", 0))
        self.context = getattr(generator, "context", "all")
        self.radius = (self.kernel - 1) // 2
        offset = getattr(generator, "input_offset", None)
        scale = getattr(generator, "input_scale", None)
        offset = torch.zeros(c) if offset is None else offset.detach().double()
        scale = torch.ones(c) if scale is None else scale.detach().double()
        eye = torch.eye(generator.S[0].shape[0], dtype=torch.float64)
        # Fold in float64, store in float32: the folding adds no rounding of its own.
        with torch.no_grad():
            if self.kernel == 1:
                s_fold = [s.detach().double() / scale for s in generator.S]          # S' (M, C)
                lam_fold = [lam.detach().double() + s @ offset                       # λ + S' o
                            for lam, s in zip(generator.lam, s_fold)]
            else:
                s_fold = [s.detach().double() / scale[None, :, None, None]          # (M, C, k, k)
                          for s in generator.S]
                if self.context == "photo":   # the maps' off-centre taps are not part of g
                    r = self.radius
                    keep = torch.zeros_like(s_fold[0])
                    keep[:, b:] = 1
                    keep[:, :b, r, r] = 1
                    s_fold = [sf * keep for sf in s_fold]
                lam_fold = [lam.detach().double() + torch.einsum("mcij,c->m", s, offset)
                            for lam, s in zip(generator.lam, s_fold)]
            p = lambda t: torch.nn.Parameter(t.float().contiguous())  # noqa: E731
            # k = 1: (in, out) matrices for the row form; k > 1: (out, in, k, k) kernels
            self.s_t = torch.nn.ParameterList([p(s.t() if self.kernel == 1 else s) for s in s_fold])
            self.neg_lam = torch.nn.ParameterList([p(-lam) for lam in lam_fold])
            self.i_minus_w_t = torch.nn.ParameterList([p((eye - w.detach().double()).t())
                                                       for w in generator.W])
            d = generator.D.detach()[:b]
            self.d_t = p(d.t() if d.dim() == 2 else d)
            lam_s = generator.lam_synthesis
            self.neg_lam_synthesis = None if lam_s is None else p(-lam_s.detach()[:b])
        self.activation = generator.config.get("activation", "sigmoid")
        self.n_elements = b

    def _act(self, t: torch.Tensor) -> torch.Tensor:
        if self.activation == "sigmoid":
            return torch.sigmoid(t)
        from .model import LEAKY_SLOPE

        return F.leaky_relu(t, LEAKY_SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel != 1:
            raise ValueError("a k×k generator is not per pixel: use forward_image")
        a = self._act(torch.addmm(self.neg_lam[0], x, self.s_t[0]))          # A⁽¹⁾, A⁽⁰⁾ = 0
        for k in range(1, len(self.s_t)):
            a = self._act(torch.addmm(torch.addmm(self.neg_lam[k], x, self.s_t[k]),
                                      a, self.i_minus_w_t[k - 1]))           # Eq. 7
        if self.neg_lam_synthesis is None:                                   # linear synthesis
            return a @ self.d_t
        return self._act(torch.addmm(self.neg_lam_synthesis, a, self.d_t))  # Eqs. 8-9

    def forward_photo(self, x: torch.Tensor, rgb_pad: torch.Tensor) -> torch.Tensor:
        """``context = "photo"``: ``x`` ``(1, C, H, W)`` unpadded and the photograph edge-padded
        by the halo → ``Ŷ`` ``(1, B, H, W)``, the same function as :meth:`forward_image` on
        the padded ``x``.  Every layer's analysis is a k×k convolution of the 3-band
        photograph plus a 1×1 convolution of all of ``x`` whose photograph columns are zero
        (the maps' centre taps), so onnxruntime's NCHWc pass chains each layer into
        convolutions that accumulate into one another (its ``Sum`` input) and end in the
        fused sigmoid, with no slice of ``x`` and no separate ``Add`` (issue 26 item 4)."""
        b, r = self.n_elements, self.radius
        a = None
        for k in range(len(self.s_t)):
            s = self.s_t[k]
            centre = torch.cat([s[:, :b, r:r + 1, r:r + 1], torch.zeros_like(s[:, b:, :1, :1])], 1)
            t = F.conv2d(rgb_pad, s[:, b:], self.neg_lam[k]) + F.conv2d(x, centre)
            if a is not None:
                t = t + F.conv2d(a, self.i_minus_w_t[k - 1].t()[:, :, None, None])
            a = self._act(t)
        d = self.d_t.t()[:, :, None, None] if self.d_t.dim() == 2 else self.d_t
        if self.neg_lam_synthesis is None:
            return F.conv2d(a, d)
        return self._act(F.conv2d(a, d, self.neg_lam_synthesis))

    def forward_image(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(1, C, H+2·halo, W+2·halo)`` → ``Ŷ`` ``(1, B, H, W)``: the same layers as
        convolutions (1×1, or valid k×k for the analysis and the synthesis)."""
        def conv(t, w_t, bias=None):  # w_t is (in, out) for 1×1, (out, in, k, k) otherwise
            w = w_t.t()[:, :, None, None] if w_t.dim() == 2 else w_t
            return F.conv2d(t, w, bias)

        def analysis(k):  # S'⁽ᵏ⁾X − λ'⁽ᵏ⁾
            if self.kernel == 1 or self.context == "all":
                return conv(x, self.s_t[k], self.neg_lam[k])
            b, r = self.n_elements, self.radius
            return (conv(x[:, b:], self.s_t[k][:, b:], self.neg_lam[k])
                    + conv(x[:, :b, r:-r, r:-r], self.s_t[k][:, :b, r:r + 1, r:r + 1]))

        a = self._act(analysis(0))
        for k in range(1, len(self.s_t)):
            a = self._act(analysis(k) + conv(a, self.i_minus_w_t[k - 1]))
        if self.neg_lam_synthesis is None:
            return conv(a, self.d_t)
        return self._act(conv(a, self.d_t, self.neg_lam_synthesis))


#: The fused form must reproduce the generator to this (normalised units) or is not used.
FUSED_TOLERANCE = 1e-5


def inference_form(generator: torch.nn.Module) -> tuple[torch.nn.Module, bool]:
    """``(module, fused)``: :class:`FusedLista` for the proposed method's generator when it
    reproduces the generator on random pixels (so a change of the generator's forward
    that the folding does not know cannot go unnoticed), else the generator itself (any
    per-pixel module mapping ``(N, B+3)`` rows to ``(N, ≥ B)``)."""
    from .model import Generator

    if not isinstance(generator, Generator):
        return generator, False
    try:
        fused = FusedLista(generator).eval()
    except (AttributeError, KeyError, RuntimeError, TypeError):
        return generator, False
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        if generator.kernel == 1:
            x = torch.rand(4096, generator.n_channels, generator=g)
            ref, got = generator(x)[:, :generator.n_elements], fused(x)
        else:
            x = torch.rand(1, generator.n_channels, 16 + 2 * generator.halo, 16 + 2 * generator.halo,
                           generator=g)
            ref, got = generator.forward_image(x)[:, :generator.n_elements], fused.forward_image(x)
        err = (got - ref).abs().max().item()
    if not err <= FUSED_TOLERANCE:
        warnings.warn(f"the fused inference form differs from the generator by {err:.2g}; "
                      "exporting the generator unfused", RuntimeWarning, stacklevel=2)
        return generator, False
    return fused, True


def check_exportable(operator: Mapping[str, Any]) -> None:
    """Refuse operators whose projection is not block-local (see the module docstring)."""
    name = (operator or {}).get("name", "blockmean")
    if name != "blockmean":
        raise mb.ConfigError(
            f"ONNX export supports models trained with the blockmean operator, found {name!r}: "
            "the exact projection of the Gaussian beam and coarse-scan operators is a solve over "
            "the whole scan, which cannot be tiled or streamed; retrain with --operator blockmean"
        )


def export_generator(generator: torch.nn.Module, path: str | os.PathLike, *,
                     elements: list[str], scale: int, operator: Mapping[str, Any] | None = None,
                     projection: bool = True, metadata: Mapping[str, Any] | None = None,
                     opset: int = OPSET, fuse: bool = True, core_only: bool = True) -> Path:
    """Write ``generator`` wrapped in :class:`SuperResolvePipeline` as one ONNX file.

    ``metadata`` (normalisation — required —, painting id, preset, …) goes into the
    model's ``metadata_props`` as JSON strings; ``elements``, ``scale``, ``operator``,
    ``projection``, ``opset``, ``halo_lr`` and the I/O names are always written.
    The file is written atomically and checked with ``onnx.checker`` (``full_check``).
    ``fuse``: export the proposed generator in its :class:`FusedLista` inference form.
    ``core_only``: the graph outputs only the core of its input, without the ``halo_lr``
    LR pixels on each side (metadata ``margin_lr = halo_lr``; :class:`SuperResolvePipeline`):
    tiles then run the network on no pixel whose output is thrown away (issue 26 item 4:
    +13 % HR pixels per CPU-second for the per-pixel generator, +30 % for k = 5).
    ``False``: the output is the whole input (``margin_lr = 0``, the format before).
    """
    import onnx

    operator = dict(operator or {"name": "blockmean", "scale": int(scale)})
    check_exportable(operator)
    elements = [str(e) for e in elements]
    props = dict(metadata or {})
    norm = props.get("normalisation")
    if (not isinstance(norm, Mapping) or len(norm.get("offset", ())) != len(elements)
            or len(norm.get("span", ())) != len(elements)):
        raise mb.ConfigError(
            "export needs metadata['normalisation'] = {'offset': [...], 'span': [...]} with one value "
            f"per element ({len(elements)}), the units the generator was trained in; found {norm!r}")
    props["normalisation"] = {"offset": [float(v) for v in norm["offset"]],
                              "span": [float(v) for v in norm["span"]]}
    kernel = int(getattr(generator, "kernel", 1))
    context = getattr(generator, "context", "all") if kernel > 1 else "none"
    reach = int(getattr(generator, "halo", 0))
    network, fused = inference_form(generator) if fuse else (generator, False)
    margin = tile_halo_lr(reach, scale) if core_only else 0
    pipeline = SuperResolvePipeline(network, len(elements), scale, projection, margin).eval()
    # A small, non-square example; every spatial axis is declared dynamic below.
    h, w = 3 + 2 * margin, 5 + 2 * margin
    example = (torch.rand(1, len(elements), h, w), torch.rand(1, 3, h * scale, w * scale))
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python values
        torch.onnx.export(
            pipeline, example, buf, dynamo=False, opset_version=opset,
            input_names=[INPUT_LR, INPUT_RGB], output_names=[OUTPUT],
            dynamic_axes={INPUT_LR: {2: "h_lr", 3: "w_lr"}, INPUT_RGB: {2: "height", 3: "width"},
                          OUTPUT: ({2: "core_height", 3: "core_width"} if margin
                                   else {2: "height", 3: "width"})},
            do_constant_folding=True,
        )
    model = onnx.load_from_string(buf.getvalue())
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    annotate_spatial_dims(model, int(scale), margin_lr=margin)
    model.producer_name = "maxrf-bench"
    model.doc_string = (
        "MA-XRF super-resolution (Fig. 1(a)): inputs maps_lr (1, B, h, w) and rgb (1, 3, s*h, s*w), "
        "output maps (1, B, s*h, s*w), or only its core (1, B, s*(h-2m), s*(w-2m)) when metadata "
        "margin_lr = m > 0 (edge-pad the inputs by m LR pixels for the whole image); maps in "
        "normalised units: normalised = (counts - offset) / span per element, offsets and spans in metadata 'normalisation'."
    )
    props.update({
        "format": FORMAT, "elements": elements, "scale": int(scale), "operator": operator,
        "projection": bool(projection), "opset": int(opset),
        "kernel": kernel, "context": context, "halo_hr": reach,
        "halo_lr": tile_halo_lr(reach, scale), "margin_lr": margin,
        "network": (f"FusedLista (Eqs. 7-9 with constants folded, {kernel}x{kernel} analysis, "
                    f"context {context})" if fused else type(generator).__name__),
        "inputs": {INPUT_LR: ["batch=1", "element", "y_lr", "x_lr"],
                   INPUT_RGB: ["batch=1", "band", "y", "x"]},
        "outputs": {OUTPUT: ["batch=1", "element", "y", "x"] if not margin else
                    ["batch=1", "element", f"y - {2 * margin * int(scale)}", f"x - {2 * margin * int(scale)}"]},
        "units": "normalised",
    })
    onnx.helper.set_model_props(model, {k: _json(v) for k, v in props.items()})
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    with mb.atomic_path(path) as tmp:
        onnx.save_model(model, tmp, save_as_external_data=False)
    return path


def annotate_spatial_dims(model, scale: int, sizes=((3, 5), (5, 8)), margin_lr: int = 0) -> int:
    """Name the spatial dimensions of every 4-D intermediate tensor (``height``, ``width``,
    ``height+4``, ``h_lr``…) in the graph's ``value_info``, in place; returns how many.

    ONNX shape inference loses the symbolic sizes at the bilinear ``Resize`` (its output size
    is computed from data), so every activation of the network has unknown ``H × W``.
    onnxruntime's NCHWc layout pass then cannot prove that the two convolutions of a LISTA
    layer (``S'X − λ'`` and ``(I − W)A``) give tensors of one shape: it leaves the ``Add``
    and the sigmoid as separate passes over the 64-channel activations instead of fusing
    them into the second convolution (its ``Sum`` input and activation).  With the sizes
    named, every layer is one fused convolution (issue 26 item 4: about 15 % more pixels per
    CPU-second for the per-pixel generator, ``tests/benchmarks/bench_infer.py``).

    The sizes are measured, not derived: the graph runs (optimisation off) at two LR sizes
    and each tensor's height and width are fitted as ``a·h + c``; ``a = scale`` names it
    after the input ``height`` (``c`` appended when non-zero), ``a = 1`` after ``h_lr``.
    A tensor whose size fits neither keeps what shape inference gave.  ``margin_lr``: the
    probe sizes grow by it on each side (the graph crops it).
    """
    sizes = tuple((h + 2 * margin_lr, w + 2 * margin_lr) for h, w in sizes)
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.value_info[:]
    outputs = {o.name for o in probe.graph.output}
    inputs = {i.name for i in probe.graph.input}
    names = [o for n in probe.graph.node for o in n.output if o and o not in outputs | inputs]
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    n_el = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    shapes = []
    for h, w in sizes:
        feed = {INPUT_LR: np.zeros((1, n_el, h, w), np.float32),
                INPUT_RGB: np.zeros((1, 3, h * scale, w * scale), np.float32)}
        shapes.append(dict(zip([o.name for o in sess.get_outputs()], (a.shape for a in sess.run(None, feed)))))
    (h1, w1), (h2, w2) = sizes

    def label(v1: int, v2: int, x1: int, x2: int, hr: str, lr: str) -> str | None:
        a, rem = divmod(v2 - v1, x2 - x1)
        if rem:
            return None
        c = v1 - a * x1
        base = hr if a == scale else lr if a == 1 else None
        return None if base is None else base + (f"{c:+d}" if c else "")

    info = {v.name: v for v in model.graph.value_info}
    done = 0
    for name in names:
        s1, s2 = shapes[0].get(name), shapes[1].get(name)
        if s1 is None or len(s1) != 4 or len(s2) != 4 or s1[:2] != s2[:2]:
            continue
        ys = label(s1[2], s2[2], h1, h2, "height", "h_lr")
        xs = label(s1[3], s2[3], w1, w2, "width", "w_lr")
        if ys is None or xs is None:
            continue
        if name not in info:
            info[name] = model.graph.value_info.add()
            info[name].name = name
            info[name].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        shape = info[name].type.tensor_type.shape
        del shape.dim[:]
        for d in (int(s1[0]), int(s1[1]), ys, xs):
            shape.dim.add().CopyFrom(onnx.TensorShapeProto.Dimension(
                **({"dim_value": d} if isinstance(d, int) else {"dim_param": d})))
        done += 1
    return done


def _json(value: Any) -> str:
    """metadata_props values are strings: JSON for everything but plain strings."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=_to_builtin)


def _to_builtin(value: Any):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def export_onnx(workdir: str | os.PathLike, path: str | os.PathLike,
                metadata: Mapping[str, Any] | None = None) -> Path:
    """Export the generator the proposed method trained in ``workdir`` to ``path``.

    ``metadata`` comes from the host (``maxrf-bench export``): elements, scale, operator,
    normalisation, dataset, toolkit version, preset, params.  The generator's own
    metadata (from :func:`load_generator`) fills what the host did not give.
    """
    from .model import load_generator

    generator, meta = load_generator(Path(workdir))  # StoreError when nothing was trained
    # The generator's own record fills what the host did not give (the host wins).
    keep = ("elements", "scale", "operator", "params", "config", "activation", "synthesis",
            "projection", "fingerprint", "seed")
    merged = {k: v for k, v in dict(meta or {}).items() if k in keep}
    merged.update(dict(metadata or {}))
    elements = merged.get("elements")
    scale = merged.get("scale")
    if not elements or not scale:
        raise mb.ConfigError(f"cannot export from {str(workdir)!r}: element names and scale are "
                             f"unknown (found elements={elements!r}, scale={scale!r})")
    operator = merged.get("operator") or {"name": "blockmean", "scale": int(scale)}
    params = merged.get("params") or {}
    projection = bool(params.get("projection", merged.get("projection", True)))
    field = registration_field(meta, params, workdir)
    if field is not None:  # register=lr (ours): the runtime samples the photograph as the training did
        from maxrf_infer.photo import field_record

        merged["photo_field"] = field_record(field)
    recorrupt = recorrupt_record(params, workdir, merged.get("lr_noise"), len(elements))
    if recorrupt is not None:  # recorrupt > 0 (ours): the runtime averages the draws, then projects
        merged["recorrupt"], projection = recorrupt, False
    generator = generator.float().cpu().eval()
    return export_generator(generator, path, elements=list(elements), scale=int(scale),
                            operator=operator, projection=projection, metadata=merged)


def recorrupt_record(params: Mapping[str, Any], workdir, lr_noise: Mapping[str, Any] | None,
                     n_elements: int) -> dict | None:
    """The ``recorrupt`` metadata (:mod:`maxrf_infer.recorrupt`) of a ``recorrupt > 0``
    generator: the noise its run's inference averaged over, from the record that inference
    wrote (``method.RECORRUPT_RECORD``) and, for a std from the counts, the host's model of
    them (``lr_noise``, :func:`maxrf_bench.noise_model` of the run's inputs); ``None`` for
    ``recorrupt = 0``."""
    if not float((params or {}).get("recorrupt", 0.0) or 0.0) > 0:
        return None
    from maxrf_infer.recorrupt import GENERATOR, RECORD_FORMAT

    from .method import RECORRUPT_RECORD

    path = Path(workdir) / RECORRUPT_RECORD
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        rec = {}
    if rec.get("applied") is False:  # recorrupt_min_lr_pixels: trained and run without it
        return None
    if rec.get("generator") != GENERATOR:
        raise mb.ConfigError(
            f"cannot export from {str(workdir)!r}: the generator was trained with recorrupt="
            f"{params.get('recorrupt')!r} but {RECORRUPT_RECORD} does not record the noise of its run's "
            f"inference in the {GENERATOR!r} draws the runtime reproduces (a run before they existed); "
            "run the cell again (--force) and export it")
    if rec["noise"] == "counts":
        if not isinstance(lr_noise, Mapping) or lr_noise.get("model") != "counts":
            raise mb.ConfigError(
                f"cannot export from {str(workdir)!r}: its recorruption std came from the LR counts "
                "(--protocol acquisition) but the run's saved inputs give no counts model (found "
                f"{dict(lr_noise) if isinstance(lr_noise, Mapping) else lr_noise!r}); export the run "
                "directory the cell ran in")
        noise = {"model": "counts", "dwell": float(lr_noise["dwell"]),
                 "gain_cv": float(lr_noise.get("gain_cv", 0.0))}
    else:
        noise = {"model": "blind", "sigma": [float(v) for v in rec["sigma"]]}
    if len(rec["elements"]) != n_elements:
        raise mb.ConfigError(f"cannot export from {str(workdir)!r}: {RECORRUPT_RECORD} names "
                             f"{len(rec['elements'])} elements, the generator {n_elements}")
    return {"format": RECORD_FORMAT, "generator": GENERATOR, "alpha": float(rec["alpha"]),
            "draws": int(rec["draws"]), "seed": int(rec["seed"]), "noise": noise,
            "elements": [bool(v) for v in rec["elements"]], "projection": bool(rec["projection"])}


def registration_field(meta: Mapping[str, Any] | None, params: Mapping[str, Any], workdir) -> np.ndarray | None:
    """The ``(2, h_lr, w_lr)`` field (HR pixels) at which a ``register = "lr"`` generator saw
    the photograph (``training.register_field_lr``; ``None`` when the photograph was used as
    given, also when the registration found nothing significant and left it untouched)."""
    if (params or {}).get("register", "none") != "lr":
        return None
    training = dict((meta or {}).get("training") or {})
    if not training.get("register_applied", True):
        return None
    field = training.get("register_field_lr")
    if field is None:
        raise mb.ConfigError(f"cannot export from {str(workdir)!r}: the generator was trained with "
                             "register='lr' but its record holds no registration field "
                             "(training.register_field_lr); train it again")
    return np.asarray(field, np.float64)
