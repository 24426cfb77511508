"""The generator ``g(X; θ)`` of the paper (Sec. III, Fig. 1(a)): an unfolded LISTA network.

With ``kernel = 1`` (the paper's network) every matrix product of Eqs. 7–8 is a 1×1
convolution, i.e. the network is *per pixel*: here it is written as a product on a
``(N, C)`` batch of pixel rows (pixels × channels), the same computation as the paper's
1×1 convolutions on a ``(C, H, W)`` image, which lets training draw any set of pixels (the
blocks of a random mini-batch, the pixels of a discriminator patch) without running the
whole image.

Notation (paper → code), with ``C = B + b`` channels (``b = 3`` RGB bands):

* ``X = [Y_↑ ; Z]``             → ``x``  ``(N, C)``: bilinear-upsampled LR maps, then RGB
* ``S⁽ᵏ⁾ ∈ R^{M×C}``            → ``self.S[k]`` (``(M, C)``; ``(M, C, k, k)`` when ``kernel > 1``)
* ``W⁽ᵏ⁾ ∈ R^{M×M}``            → ``self.W[k]`` (always 1×1)
* ``λ⁽ᵏ⁾ ∈ R^{M}`` (one per row of ``A``) → ``self.lam[k]``
* ``D ∈ R^{C×M}``, ``λ⁽ᴷ⁾ ∈ R^{C}`` (synthesis) → ``self.D`` (``(C, M, k, k)`` when
  ``kernel > 1``), ``self.lam_synthesis``

Eq. 7   ``A⁽ᵏ⁺¹⁾ = Sigmoid(A⁽ᵏ⁾ − W⁽ᵏ⁾A⁽ᵏ⁾ + S⁽ᵏ⁾X − λ⁽ᵏ⁾)``, ``k = 0 … K−1``, with
        ``A⁽⁰⁾ = 0`` (ISTA started from zero), so the first layer reduces to
        ``A⁽¹⁾ = Sigmoid(S⁽⁰⁾X − λ⁽⁰⁾)`` (its ``W⁽⁰⁾`` multiplies zeros and is not created).
Eq. 8   ``X̂ = Sigmoid(D A⁽ᴷ⁾ − λ⁽ᴷ⁾)``
Eq. 9   ``Ŷ = X̂[0:B]``, ``Ẑ = X̂[B:B+b]``

**Context-aware generator (``kernel = k > 1``, our extension, not the paper's method).**
The same unfolding, synthesis, projection and losses, with the analysis ``S⁽ᵏ⁾`` as
``k×k`` convolutions so that a pixel sees its neighbourhood; ``W⁽ᵏ⁾`` stays 1×1 (a mixing
of the codes of one pixel, as in ISTA).  Two variants (``context``):

* ``"all"`` — ``S⁽ᵏ⁾`` and ``D`` are ``k×k`` over every channel of ``X`` (the literal
  reading of "S and D as k×k convolutions"); an output pixel sees ``(2k−1)²`` pixels of
  ``X``: ``halo = k − 1``.
* ``"photo"`` — only the photograph's channels ``Z`` are read ``k×k``; the element
  channels ``Y↑`` keep their centre tap (1×1) and ``D`` is 1×1: a pixel sees the ``k×k``
  neighbourhood of the photograph and its own interpolated maps: ``halo = (k − 1)/2``.
  Without the spatial taps on ``Y↑`` the network cannot meet ``L_c1`` by re-shaping the
  bilinear interpolation (a deconvolution that adds no detail); the context it gets is
  the photograph's edges.

On the image the function is defined as: pad ``X`` by ``halo`` HR pixels with edge
replication, then *valid* convolutions.  Training regions, tiles of the exported runtime
and whole-image inference all evaluate exactly this function, because a region of the
output depends only on ``X`` within ``halo`` pixels of it.  Initialisation: the centre
tap of each ``k×k`` kernel gets the Xavier-uniform values of the ``k = 1`` network, the
other taps start at 0, so training starts from a per-pixel network and learns its
context (measured on the tuning scene, ``__init__.py``).

Not in the paper (our choices, documented where they are made): ``X`` is standardised per
channel by two fixed buffers set from the data before training (a reparametrisation of
``S⁽ᵏ⁾`` and ``λ⁽ᵏ⁾``, same function class), and ``λ⁽ᴷ⁾`` starts at the channel means (the
paper gives Xavier uniform for the matrices and nothing for the biases).

Ablation switches (Table III): ``synthesis="linear"`` drops the sigmoid and the bias after
``D``; ``activation="leaky_relu"`` replaces every sigmoid (Eqs. 7 and 8) by a leaky ReLU.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import maxrf_bench as mb

GENERATOR_WEIGHTS = "generator.pt"
GENERATOR_CONFIG = "generator.json"
LEAKY_SLOPE = 0.2  # leaky ReLU slope for the Table III "Use Leaky ReLU" ablation (not in the paper)


def _activation(name: str):
    if name == "sigmoid":
        return torch.sigmoid
    if name == "leaky_relu":
        return lambda t: F.leaky_relu(t, LEAKY_SLOPE)
    raise ValueError(f"activation must be 'sigmoid' or 'leaky_relu', found {name!r}")


def lista_layer(a: torch.Tensor | None, x: torch.Tensor, S: torch.Tensor, W: torch.Tensor | None,
                lam: torch.Tensor, activation=torch.sigmoid) -> torch.Tensor:
    """One unfolded iteration, Eq. 7: ``A ← σ(A − W A + S X − λ)``.

    Shapes (rows are pixels, so every matrix of the paper acts from the right, transposed):
    ``a`` ``(N, M)`` or ``None`` for ``A⁽⁰⁾ = 0``; ``x`` ``(N, C)``; ``S`` ``(M, C)``;
    ``W`` ``(M, M)`` (ignored when ``a`` is None); ``lam`` ``(M,)``.  Returns ``(N, M)``.
    """
    pre = torch.addmm(-lam, x, S.t())              # S X − λ
    if a is not None:
        # A − W A = (I − W) A: one fused product instead of a product and a subtraction
        eye = torch.eye(W.shape[0], dtype=W.dtype, device=W.device)
        pre = torch.addmm(pre, a, (eye - W).t())
    return activation(pre)


def synthesis(a: torch.Tensor, D: torch.Tensor, lam: torch.Tensor | None,
              activation=torch.sigmoid) -> torch.Tensor:
    """The synthesis layer, Eq. 8: ``X̂ = σ(D A⁽ᴷ⁾ − λ⁽ᴷ⁾)``; linear ``D A`` when ``lam`` is None.

    ``a`` ``(N, M)``, ``D`` ``(C, M)``, ``lam`` ``(C,)``; returns ``(N, C)``.
    """
    if lam is None:
        return a @ D.t()
    return activation(torch.addmm(-lam, a, D.t()))


def split_reconstruction(x_hat: torch.Tensor, n_elements: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 9: ``Ŷ = X̂[0:B]`` (MA-XRF maps), ``Ẑ = X̂[B:B+b]`` (RGB), on the channel axis (last)."""
    return x_hat[..., :n_elements], x_hat[..., n_elements:]


def check_kernel(kernel) -> int:
    """``kernel`` as an int, or one clear :class:`maxrf_bench.ConfigError` (odd, ≥ 1)."""
    try:
        k = int(kernel)
    except (TypeError, ValueError):
        k = None
    if k is None or k != kernel or k < 1 or k % 2 == 0:
        raise mb.ConfigError(f"proposed.kernel must be an odd integer ≥ 1 (1 = the paper's per-pixel "
                             f"network, 3 or 5 = k×k analysis/synthesis), found {kernel!r}")
    return k


CONTEXTS = ("all", "photo")


def pad_replicate(x: torch.Tensor, halo: int) -> torch.Tensor:
    """``(N, C, H, W)`` → ``(N, C, H+2·halo, W+2·halo)``, edge pixels replicated."""
    if halo == 0:
        return x
    return F.pad(x, (halo, halo, halo, halo), mode="replicate")


class Generator(nn.Module):
    """``g(X; θ)``: ``X`` → ``X̂`` (``B+b`` channels in and out, before projection).

    ``forward(rows)``: pixel rows ``(N, B+b)`` → ``(N, B+b)`` (``kernel = 1`` only).
    ``forward_image(x_pad)``: ``(N, B+b, h+2·halo, w+2·halo)`` → ``(N, B+b, h, w)`` for
    every kernel (``halo``: see :attr:`halo`; ``x_pad`` is ``X`` with its context, e.g.
    :func:`pad_replicate` of the whole image).
    ``config`` (a JSON-able dict) rebuilds the same architecture: ``Generator(**config)``.
    """

    def __init__(self, n_elements: int, n_bands: int = 3, n_atoms: int = 64, n_layers: int = 5,
                 activation: str = "sigmoid", synthesis: str = "sigmoid", kernel: int = 1,
                 context: str = "all"):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"the generator needs at least one unfolded layer, found K={n_layers}")
        if synthesis not in ("sigmoid", "linear"):
            raise ValueError(f"synthesis must be 'sigmoid' or 'linear', found {synthesis!r}")
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, found {context!r}")
        k = check_kernel(kernel)
        self.config = dict(n_elements=int(n_elements), n_bands=int(n_bands), n_atoms=int(n_atoms),
                           n_layers=int(n_layers), activation=activation, synthesis=synthesis,
                           kernel=k, context=context)
        self.n_elements = int(n_elements)
        self.n_bands = int(n_bands)
        self.kernel = k
        self.context = context
        c, m = self.n_elements + self.n_bands, int(n_atoms)
        taps = () if k == 1 else (k, k)
        d_taps = taps if context == "all" else ()
        self.S = nn.ParameterList([nn.Parameter(torch.empty(m, c, *taps)) for _ in range(n_layers)])
        # W⁽⁰⁾ would multiply A⁽⁰⁾ = 0: only layers 1 … K−1 carry a W.
        self.W = nn.ParameterList([nn.Parameter(torch.empty(m, m)) for _ in range(n_layers - 1)])
        self.lam = nn.ParameterList([nn.Parameter(torch.zeros(m)) for _ in range(n_layers)])
        self.D = nn.Parameter(torch.empty(c, m, *d_taps))
        self.lam_synthesis = nn.Parameter(torch.zeros(c)) if synthesis == "sigmoid" else None
        self._act = _activation(activation)
        # Per-channel standardisation of X (buffers, saved with the weights): the same
        # function class as Eq. 7 (S⁽ᵏ⁾ and λ⁽ᵏ⁾ absorb any affine map of X), but element
        # maps whose values span 0–0.05 are no longer 20× weaker inputs than RGB bands,
        # which conditions the optimisation far better.  Identity until set.
        self.register_buffer("input_offset", torch.zeros(c))
        self.register_buffer("input_scale", torch.ones(c))
        self.reset_parameters()

    @property
    def n_channels(self) -> int:
        return self.n_elements + self.n_bands

    @property
    def radius(self) -> int:
        """``(kernel − 1)/2``: the reach of one k×k convolution."""
        return (self.kernel - 1) // 2

    @property
    def halo(self) -> int:
        """HR pixels of ``X`` needed beyond each side of an output region: ``kernel − 1``
        (``context="all"``: analysis and synthesis), ``(kernel − 1)/2`` (``"photo"``)."""
        return 2 * self.radius if self.context == "all" else self.radius

    def reset_parameters(self) -> None:
        """Xavier uniform for every matrix (paper Sec. IV-A); biases λ start at zero.  k×k
        kernels: the centre tap gets the Xavier values of the 1×1 matrix, the others 0."""
        for p in [*self.S, *self.W, self.D]:
            if p.dim() == 2:
                nn.init.xavier_uniform_(p)
            else:
                centre = torch.empty(p.shape[:2])
                nn.init.xavier_uniform_(centre)
                with torch.no_grad():
                    p.zero_()
                    p[:, :, self.radius, self.radius] = centre
        for p in self.lam:
            nn.init.zeros_(p)
        if self.lam_synthesis is not None:
            nn.init.zeros_(self.lam_synthesis)

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation from pixel rows ``x`` ``(N, C)`` of ``X``.

        Sets the input standardisation (mean, std per channel) and the synthesis bias so that
        the untrained network outputs each channel's mean level (``σ(−λ) = mean``) instead of
        0.5: the paper does not say how biases start; this spares the first thousand steps
        of moving them, which matters for maps whose values are mostly near 0.
        """
        mean, std = x.mean(0), x.std(0)
        self.input_offset.copy_(mean)
        self.input_scale.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))
        if self.lam_synthesis is not None:
            level = mean.clamp(0.01, 0.99)
            bias = -torch.log(level / (1 - level)) if self.config["activation"] == "sigmoid" else -mean
            self.lam_synthesis.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(N, B+b)`` → ``X̂`` ``(N, B+b)``: K LISTA layers (Eq. 7) then synthesis (Eq. 8)."""
        if self.kernel != 1:
            raise ValueError(f"a generator with {self.kernel}×{self.kernel} kernels is not per pixel: "
                             "use forward_image on a region with its halo")
        x = (x - self.input_offset) / self.input_scale
        if self._fused_training():
            return self.lista_rows(x, list(self.S))
        a = None                                            # A⁽⁰⁾ = 0
        for k in range(len(self.S)):
            w = self.W[k - 1] if k > 0 else None
            a = lista_layer(a, x, self.S[k], w, self.lam[k], self._act)
        return synthesis(a, self.D, self.lam_synthesis, self._act)

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        """All ``S⁽ᵏ⁾X − λ⁽ᵏ⁾`` at once (they read the same ``X``): standardised ``x``
        ``(N, C, h', w')`` → ``(N, K·M, h' − 2r, w' − 2r)`` (valid k×k convolutions; for
        ``context="photo"`` k×k on the photograph's channels, the centre tap on the maps)."""
        s_all = torch.cat(list(self.S), 0)
        neg_lam = -torch.cat(list(self.lam), 0)
        if self.context == "all":
            return F.conv2d(x, s_all, neg_lam)
        b, r = self.n_elements, self.radius
        h, w = x.shape[-2:]
        centre = s_all[:, :b, r:r + 1, r:r + 1]
        return (F.conv2d(x[:, b:], s_all[:, b:], neg_lam)
                + F.conv2d(x[:, :b, r:h - r, r:w - r], centre))

    # --- training fast path (same function and gradients, fewer and larger operations) ---

    def _fused_training(self) -> bool:
        """Whether the fused rows path runs: in training mode (with or without gradients: the
        discriminator's warm-up draws generated patches without), never in eval mode and
        never while tracing or exporting (those see the plain operations above and below)."""
        return self.training and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export()

    def lista_rows(self, x: torch.Tensor, analysis: list[torch.Tensor]) -> torch.Tensor:
        """Eqs. 7–8 on standardised pixel rows ``x`` ``(N, C')`` with the per-layer analysis
        matrices ``analysis`` (``K`` of ``(M, C')``) → ``X̂`` ``(N, C)``: one autograd node with
        a hand-written backward (:class:`_ListaRows`), the same numbers as the layer-by-layer
        code up to float rounding."""
        return _ListaRows.apply(self.config["activation"], x, self.D, self.lam_synthesis, len(analysis),
                                *analysis, *self.lam, *self.W)

    def forward_nhwc(self, x_nhwc: torch.Tensor) -> torch.Tensor:
        """``g`` on regions with their halo, channels last: ``(n, h+2·halo, w+2·halo, C)`` →
        ``X̂`` ``(n, h, w, C)`` (the function of :meth:`forward_image`).  In a training step
        of the per-pixel or ``context="photo"`` network the whole network runs on pixel rows
        (the k×k analysis of the photograph as one matrix product on its unfolded patches);
        otherwise through :meth:`forward_image`."""
        n, hp, wp, c = x_nhwc.shape
        if self.kernel == 1:
            return self(x_nhwc.reshape(-1, c)).reshape(n, hp, wp, c)
        if self.context != "photo" or not self._fused_training():
            return self.forward_image(x_nhwc.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        b, r, k = self.n_elements, self.radius, self.kernel
        h, w = hp - 2 * r, wp - 2 * r
        xs = (x_nhwc - self.input_offset) / self.input_scale
        photo = F.unfold(xs[..., b:].permute(0, 3, 1, 2), k)             # (n, bands·k², h·w)
        feats = torch.cat([photo.transpose(1, 2).reshape(n * h * w, -1),
                           xs[:, r:hp - r, r:wp - r, :b].reshape(n * h * w, b)], 1)
        analysis = [torch.cat([s[:, b:].reshape(s.shape[0], -1), s[:, :b, r, r]], 1) for s in self.S]
        return self.lista_rows(feats, analysis).reshape(n, h, w, c)

    def forward_image(self, x_pad: torch.Tensor) -> torch.Tensor:
        """``(N, C, h+2·halo, w+2·halo)`` → ``X̂`` ``(N, C, h, w)``: Eqs. 7–8 as convolutions.

        ``kernel = 1``: the per-pixel rows of :meth:`forward` (the same numbers as 1×1
        convolutions).  ``kernel > 1``: :meth:`analysis` (one convolution with ``K·M``
        outputs), the 1×1 ``W⁽ᵏ⁾``, and ``D`` (valid ``k×k`` for ``context="all"``, 1×1
        for ``"photo"``).
        """
        n, c, hp, wp = x_pad.shape
        if self.kernel == 1:
            rows = x_pad.permute(0, 2, 3, 1).reshape(-1, c)
            return self(rows).reshape(n, hp, wp, c).permute(0, 3, 1, 2)
        x = (x_pad - self.input_offset[:, None, None]) / self.input_scale[:, None, None]
        m = self.S[0].shape[0]
        pres = self.analysis(x).split(m, dim=1)             # S⁽ᵏ⁾X − λ⁽ᵏ⁾, k = 0 … K−1
        a = self._act(pres[0])                              # A⁽¹⁾, A⁽⁰⁾ = 0
        eye = torch.eye(m, dtype=x.dtype, device=x.device)
        for k in range(1, len(self.S)):
            i_minus_w = (eye - self.W[k - 1])[:, :, None, None]
            a = self._act(pres[k] + F.conv2d(a, i_minus_w))  # Eq. 7
        d = self.D if self.D.dim() == 4 else self.D[:, :, None, None]
        lam = self.lam_synthesis
        return self._act(F.conv2d(a, d, -lam)) if lam is not None else F.conv2d(a, d)


def _act_backward(name: str, grad: torch.Tensor, out: torch.Tensor, into: torch.Tensor | None = None):
    """``grad · act'(pre)`` from the activation's output ``out`` (sigmoid: ``out(1 − out)``;
    leaky ReLU: 1 or the slope by the sign of ``out``), written into ``into`` when given (which
    may be ``grad`` itself: an elementwise kernel reads each element before writing it)."""
    if name == "sigmoid":
        if into is None:
            return torch.ops.aten.sigmoid_backward(grad, out)
        return torch.ops.aten.sigmoid_backward.grad_input(grad, out, grad_input=into)
    if into is None:
        return torch.ops.aten.leaky_relu_backward(grad, out, LEAKY_SLOPE, True)
    return torch.ops.aten.leaky_relu_backward.grad_input(grad, out, LEAKY_SLOPE, True, grad_input=into)


class _ListaRows(torch.autograd.Function):
    """Eqs. 7–8 on pixel rows, the backward written out (training only).

    Forward, for standardised rows ``x`` ``(N, C')`` and per-layer analysis matrices
    ``Sₖ`` ``(M, C')``: ``A⁽¹⁾ = σ(x S₀ᵀ − λ₀)``, ``A⁽ᵏ⁺¹⁾ = σ(x Sₖᵀ − λₖ + A⁽ᵏ⁾(I − W⁽ᵏ⁾)ᵀ)``,
    ``X̂ = σ(A⁽ᴷ⁾Dᵀ − λ⁽ᴷ⁾)``.  The bias ``−λₖ`` rides in the product as a column of ``Sₖ``
    against a column of ones in ``x``, and each layer is one fresh tensor accumulated in place
    (two products, one sigmoid, no other pass over the ``(N, M)`` activations).  Backward:
    the chain rule of those lines, layer by layer (``∂Sₖ`` and ``∂λₖ`` from one product; each
    layer's ``∂(pre-activation)`` written in place over the gradient it is computed from,
    which alternates between two ``(N, M)`` buffers: no allocation per layer).
    It computes what autograd computes on the layer-by-layer code of :meth:`Generator.forward`
    (equal to float rounding; ``tests/test_train_fast_path.py``), without a graph node and a
    temporary per operation.
    """

    @staticmethod
    def forward(ctx, act, x, D, lam, n_layers, *weights):
        Ss, lams, Ws = weights[:n_layers], weights[n_layers:2 * n_layers], weights[2 * n_layers:]
        n, m = x.shape[0], D.shape[1]
        xa = torch.cat([x, torch.ones(n, 1, dtype=x.dtype, device=x.device)], 1)     # [x, 1]
        sa = torch.cat([torch.cat(list(Ss), 0), -torch.cat(list(lams), 0)[:, None]], 1)  # [S, −λ]
        eye = torch.eye(m, dtype=x.dtype, device=x.device)
        mixes = [(eye - W).t() for W in Ws]                  # (I − W⁽ᵏ⁾)ᵀ
        inplace = (torch.sigmoid_ if act == "sigmoid"
                   else (lambda t: F.leaky_relu_(t, LEAKY_SLOPE)))
        acts = [inplace(xa @ sa[:m].t())]
        for k, mix in enumerate(mixes, start=1):
            pre = xa @ sa[k * m:(k + 1) * m].t()
            acts.append(inplace(pre.addmm_(acts[-1], mix)))
        if lam is None:
            out = acts[-1] @ D.t()
        else:
            out = inplace(torch.addmm(-lam, acts[-1], D.t()))
        ctx.act, ctx.linear = act, lam is None
        ctx.save_for_backward(xa, sa, D, out, *acts, *mixes)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        xa, sa, D, out, *rest = ctx.saved_tensors
        n_layers = (len(rest) + 1) // 2
        acts, mixes = rest[:n_layers], rest[n_layers:]
        m = D.shape[1]
        dz = grad_out if ctx.linear else _act_backward(ctx.act, grad_out, out)
        dD = dz.t() @ acts[-1]
        dlam = None if ctx.linear else -dz.sum(0)
        d_sa = torch.empty_like(sa)                          # [∂S, −∂λ] of every layer
        dx = torch.zeros_like(xa) if ctx.needs_input_grad[1] else None
        da = dz @ D
        spare = torch.empty_like(da)                         # ping-pong with da: no allocation per layer
        dWs = [None] * len(mixes)
        for k in range(n_layers - 1, -1, -1):
            dp = _act_backward(ctx.act, da, acts[k], into=da)   # da is a temporary: in place
            torch.mm(dp.t(), xa, out=d_sa[k * m:(k + 1) * m])
            if dx is not None:
                dx.addmm_(dp, sa[k * m:(k + 1) * m])
            if k > 0:
                dWs[k - 1] = torch.mm(dp.t(), acts[k - 1]).neg_()   # W enters as A(I − W)ᵀ
                spare, da = dp, torch.mm(dp, mixes[k - 1].t(), out=spare)
        c = xa.shape[1] - 1
        d_s = [d_sa[k * m:(k + 1) * m, :c] for k in range(n_layers)]
        d_lam = [-d_sa[k * m:(k + 1) * m, c] for k in range(n_layers)]
        return (None, dx[:, :c] if dx is not None else None, dD,
                dlam if ctx.needs_input_grad[3] else None, None, *d_s, *d_lam, *dWs)


# --- persistence -----------------------------------------------------------------------

def save_generator(generator: Generator, workdir: Path, metadata: dict) -> None:
    """``generator.pt`` (a plain state_dict, loadable with ``weights_only=True``) and
    ``generator.json`` (architecture config + metadata), both written atomically."""
    workdir = Path(workdir)
    mb.atomic_torch_save({k: v.detach().cpu() for k, v in generator.state_dict().items()},
                         workdir / GENERATOR_WEIGHTS)
    mb.atomic_write_text(workdir / GENERATOR_CONFIG,
                         json.dumps({"config": generator.config, **metadata}, indent=1, default=str))


def load_generator(workdir) -> tuple[Generator, dict]:
    """The trained generator of a cell's work directory (eval mode, CPU) and its metadata.

    Metadata keys: ``config`` (architecture, incl. ``kernel`` and ``context``; 1 and ``all``
    when absent), ``elements``,
    ``scale``, ``operator`` (``Operator.to_dict()``), ``params`` (every run parameter, incl.
    the ablation flags ``activation``, ``synthesis``, ``projection``) and training state.
    """
    workdir = Path(workdir)
    wpath, cpath = workdir / GENERATOR_WEIGHTS, workdir / GENERATOR_CONFIG
    if not wpath.exists() or not cpath.exists():
        raise mb.StoreError(f"no trained generator in {str(workdir)!r}: expected {GENERATOR_WEIGHTS} and "
                            f"{GENERATOR_CONFIG} (written by the 'proposed' method at the end of training)")
    try:
        meta = json.loads(cpath.read_text())
        generator = Generator(**meta["config"])
        # weights_only: tensors and plain containers; a pickle naming any other global is
        # refused, never executed
        state = torch.load(wpath, map_location="cpu", weights_only=True)
        generator.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - truncated, foreign or malicious files alike
        raise mb.StoreError(f"cannot load the trained generator in {str(workdir)!r}: expected "
                            f"{GENERATOR_WEIGHTS} (PyTorch tensors) and {GENERATOR_CONFIG} written by "
                            f"the 'proposed' method, found {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    generator.eval()
    return generator, meta
