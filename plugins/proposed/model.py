"""The generator ``g(X; θ)`` of the paper (Sec. III, Fig. 1(a)): an unfolded LISTA network.

The network is *per pixel*: every matrix product of Eqs. 7–8 is a 1×1 convolution, so here
it is written as a product on a ``(N, C)`` batch of pixel rows (pixels × channels), which
is the same computation as the paper's 1×1 convolutions on a ``(C, H, W)`` image but lets
training draw any set of pixels (the blocks of a random mini-batch, the pixels of a
discriminator patch) without running the whole image.

Notation (paper → code), with ``C = B + b`` channels (``b = 3`` RGB bands):

* ``X = [Y_↑ ; Z]``             → ``x``  ``(N, C)``: bilinear-upsampled LR maps, then RGB
* ``S⁽ᵏ⁾ ∈ R^{M×C}``            → ``self.S[k]`` (``nn.Linear(C, M, bias=False)``)
* ``W⁽ᵏ⁾ ∈ R^{M×M}``            → ``self.W[k]``
* ``λ⁽ᵏ⁾ ∈ R^{M}`` (one per row of ``A``) → ``self.lam[k]``
* ``D ∈ R^{C×M}``, ``λ⁽ᴷ⁾ ∈ R^{C}`` (synthesis) → ``self.D``, ``self.lam_synthesis``

Eq. 7   ``A⁽ᵏ⁺¹⁾ = Sigmoid(A⁽ᵏ⁾ − W⁽ᵏ⁾A⁽ᵏ⁾ + S⁽ᵏ⁾X − λ⁽ᵏ⁾)``, ``k = 0 … K−1``, with
        ``A⁽⁰⁾ = 0`` (ISTA started from zero), so the first layer reduces to
        ``A⁽¹⁾ = Sigmoid(S⁽⁰⁾X − λ⁽⁰⁾)`` (its ``W⁽⁰⁾`` multiplies zeros and is not created).
Eq. 8   ``X̂ = Sigmoid(D A⁽ᴷ⁾ − λ⁽ᴷ⁾)``
Eq. 9   ``Ŷ = X̂[0:B]``, ``Ẑ = X̂[B:B+b]``

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
from torch import nn

GENERATOR_WEIGHTS = "generator.pt"
GENERATOR_CONFIG = "generator.json"
LEAKY_SLOPE = 0.2  # leaky ReLU slope for the Table III "Use Leaky ReLU" ablation (not in the paper)


def _activation(name: str):
    if name == "sigmoid":
        return torch.sigmoid
    if name == "leaky_relu":
        return lambda t: torch.nn.functional.leaky_relu(t, LEAKY_SLOPE)
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


class Generator(nn.Module):
    """``g(X; θ)``: maps pixel rows ``X`` ``(N, B+b)`` to ``X̂`` ``(N, B+b)`` (before projection).

    ``config`` (a JSON-able dict) rebuilds the same architecture: ``Generator(**config)``.
    """

    def __init__(self, n_elements: int, n_bands: int = 3, n_atoms: int = 64, n_layers: int = 5,
                 activation: str = "sigmoid", synthesis: str = "sigmoid"):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"the generator needs at least one unfolded layer, found K={n_layers}")
        if synthesis not in ("sigmoid", "linear"):
            raise ValueError(f"synthesis must be 'sigmoid' or 'linear', found {synthesis!r}")
        self.config = dict(n_elements=int(n_elements), n_bands=int(n_bands), n_atoms=int(n_atoms),
                           n_layers=int(n_layers), activation=activation, synthesis=synthesis)
        self.n_elements = int(n_elements)
        self.n_bands = int(n_bands)
        c, m = self.n_elements + self.n_bands, int(n_atoms)
        self.S = nn.ParameterList([nn.Parameter(torch.empty(m, c)) for _ in range(n_layers)])
        # W⁽⁰⁾ would multiply A⁽⁰⁾ = 0: only layers 1 … K−1 carry a W.
        self.W = nn.ParameterList([nn.Parameter(torch.empty(m, m)) for _ in range(n_layers - 1)])
        self.lam = nn.ParameterList([nn.Parameter(torch.zeros(m)) for _ in range(n_layers)])
        self.D = nn.Parameter(torch.empty(c, m))
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

    def reset_parameters(self) -> None:
        """Xavier uniform for every matrix (paper Sec. IV-A); biases λ start at zero."""
        for p in [*self.S, *self.W, self.D]:
            nn.init.xavier_uniform_(p)
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
        x = (x - self.input_offset) / self.input_scale
        a = None                                            # A⁽⁰⁾ = 0
        for k in range(len(self.S)):
            w = self.W[k - 1] if k > 0 else None
            a = lista_layer(a, x, self.S[k], w, self.lam[k], self._act)
        return synthesis(a, self.D, self.lam_synthesis, self._act)


# --- persistence -----------------------------------------------------------------------

def save_generator(generator: Generator, workdir: Path, metadata: dict) -> None:
    """``generator.pt`` (a plain state_dict, loadable with ``weights_only=True``) and
    ``generator.json`` (architecture config + metadata), both written atomically."""
    from .train import atomic_torch_save, atomic_write_json

    workdir = Path(workdir)
    atomic_torch_save({k: v.detach().cpu() for k, v in generator.state_dict().items()},
                      workdir / GENERATOR_WEIGHTS)
    atomic_write_json(workdir / GENERATOR_CONFIG, {"config": generator.config, **metadata})


def load_generator(workdir) -> tuple[Generator, dict]:
    """The trained generator of a cell's work directory (eval mode, CPU) and its metadata.

    Metadata keys: ``config`` (architecture), ``elements``, ``scale``, ``operator``
    (``Operator.to_dict()``), ``params`` (every run parameter, incl. the ablation flags
    ``activation``, ``synthesis``, ``projection``), ``preset_params`` and training state.
    """
    from maxrf_bench import StoreError

    workdir = Path(workdir)
    wpath, cpath = workdir / GENERATOR_WEIGHTS, workdir / GENERATOR_CONFIG
    if not wpath.exists() or not cpath.exists():
        raise StoreError(f"no trained generator in {str(workdir)!r}: expected {GENERATOR_WEIGHTS} and "
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
