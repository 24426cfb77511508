"""X-ray fluorescence of a stratified paint and Kubelka–Munk colour of its surface.

Fluorescence (primary fluorescence of a layered sample, Sherman's equation for a stack of
homogeneous layers; secondary fluorescence and scatter ignored).  For an element line ℓ
of element e at energy E_ℓ, excitation energies E0_k with flux weights w_k, and layers
j = 0 (top) … n-1 of thickness t_j (cm) and linear attenuation μ_j(E) (cm⁻¹)::

    I_ℓ = Σ_k w_k S_ℓ(E0_k) D(E_ℓ) Σ_j c_je · [1 − exp(−χ_jkℓ t_j)] / χ_jkℓ
                                        · exp(−Σ_{i<j} χ_ikℓ t_i)
    χ_jkℓ = μ_j(E0_k)/sin ψ_in + μ_j(E_ℓ)/sin ψ_out

with c_je the element's mass per volume in layer j (g/cm³), S_ℓ(E0) the line's
production cross-section (photo-absorption τ_e(E0) × shell fraction from the edge jump
ratios × fluorescence yield × line probability, cm²/g) and D(E_ℓ) the detection
efficiency (air path, Be window, Si sensor).  All mass attenuation coefficients, edges,
yields and line energies come from ``xraydb`` (Elam et al. tables).  Because layers are
described by volume fractions of components, μ_j(E) and c_je are matrix products of the
fractions with per-component tables, so a 512×512 stack costs a few matrix products.

Colour: single-constant Kubelka–Munk mixing of the pigments' K/S (by volume fraction of
pigment), ``R = 1 + K/S − sqrt((K/S)² + 2 K/S)``, per R, G, B channel, then the layers are
composited from the bottom with an opacity ``1 − exp(−t / t_hide)`` so that a paint layer
of normal thickness hides what lies beneath (a thin one lets it show).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
import xraydb

from . import pigments as pg

#: Representative line of each family, the one a scanner's software integrates.
FAMILY_LINE = {"K": ("K", "Ka"), "L": ("L3", "La"), "M": ("M5", "Ma")}
#: Shells whose absorption edge lies above the family's edge (photo-absorption there
#: removes a fraction 1 − 1/J of the photons before the shell of interest is reached).
SHELLS_ABOVE = {"K": (), "L3": ("K", "L1", "L2"), "M5": ("K", "L1", "L2", "L3", "M1", "M2", "M3", "M4")}

_BLOCK = 1 << 22  # pixels per block in fluorescence() (measured: whole images are fastest)
_LINE_RE = re.compile(r"^([A-Z][a-z]?)_([KLM])$")


@dataclass(frozen=True)
class Line:
    """An element line as scanner software lists it: ``Pb_L`` = lead, L family (Lα)."""

    name: str
    element: str
    family: str
    energy_ev: float

    @property
    def edge(self) -> str:
        return FAMILY_LINE[self.family][0]


@lru_cache(maxsize=None)
def parse_line(name: str) -> Line:
    """``"Pb_L"`` → :class:`Line` (element Pb, family L, energy of Pb Lα in eV)."""
    m = _LINE_RE.match(name)
    if not m:
        raise ValueError(f"element line must look like 'Pb_L' (symbol _ K/L/M), found {name!r}")
    el, fam = m.groups()
    edge, line = FAMILY_LINE[fam]
    try:
        energy = float(xraydb.xray_line(el, line).energy)
    except Exception:
        raise ValueError(f"xraydb has no {line} line for {el!r} (from {name!r})") from None
    return Line(name, el, fam, energy)


@dataclass(frozen=True)
class Geometry:
    """Measurement geometry and detector (defaults: a Bruker-M6-like scanner head).

    Angles in degrees from the surface; excitation: a few effective energies (keV) with
    relative photon-flux weights standing for a Rh-anode tube at 50 kV (bremsstrahlung
    below and above the Rh Kα line).
    """

    psi_in_deg: float = 45.0
    psi_out_deg: float = 45.0
    excitation_kev: tuple[float, ...] = (10.0, 20.2, 27.0)
    excitation_weights: tuple[float, ...] = (0.35, 0.40, 0.25)
    air_path_mm: float = 10.0
    be_window_um: float = 8.0
    sensor_si_um: float = 450.0


@lru_cache(maxsize=None)
def line_cross_section(line: str, e0_ev: float) -> float:
    """Production cross-section S_ℓ(E0) of ``line`` excited at ``e0_ev`` (cm²/g)."""
    ln = parse_line(line)
    edge = xraydb.xray_edge(ln.element, ln.edge)
    if edge is None or e0_ev <= edge.energy:
        return 0.0
    tau = float(xraydb.mu_elam(ln.element, e0_ev, kind="photo"))
    frac = 1.0 - 1.0 / edge.jump_ratio
    for shell in SHELLS_ABOVE[ln.edge]:
        e = xraydb.xray_edge(ln.element, shell)
        if e is not None and e0_ev > e.energy and e.jump_ratio > 1:
            frac /= e.jump_ratio
    fyield, _, prob = xraydb.fluor_yield(ln.element, ln.edge, FAMILY_LINE[ln.family][1], e0_ev)
    return tau * frac * float(fyield) * float(prob)


@lru_cache(maxsize=None)
def detector_efficiency(line: str, geometry: Geometry = Geometry()) -> float:
    """Fraction of the line's photons that cross the air path and Be window and are
    absorbed in the Si sensor."""
    e = parse_line(line).energy_ev
    air = float(xraydb.material_mu("air", e, density=0.0012)) * geometry.air_path_mm * 0.1
    be = float(xraydb.material_mu("Be", e, density=1.85)) * geometry.be_window_um * 1e-4
    si = float(xraydb.material_mu("Si", e, density=2.33)) * geometry.sensor_si_um * 1e-4
    return math.exp(-air - be) * (1.0 - math.exp(-si))


@lru_cache(maxsize=None)
def component_attenuation(energies_ev: tuple[float, ...]) -> np.ndarray:
    """``(component, energy)`` linear attenuation of each pure component, ρ_c μ_c(E) (cm⁻¹)."""
    e = np.asarray(energies_ev, dtype=float)
    elements = sorted({el for c in pg.COMPONENTS.values() for el in c.composition})
    # one database query per element (each costs ~10 ms)
    mu_el = {el: np.asarray(xraydb.mu_elam(el, e), dtype=float) for el in elements}
    out = np.zeros((len(pg.ORDER), len(energies_ev)))
    for i, name in enumerate(pg.ORDER):
        comp = pg.COMPONENTS[name]
        out[i] = comp.density * sum(w * mu_el[el] for el, w in comp.composition.items())
    return out


@dataclass
class Layer:
    """One paint layer: ``fractions`` (component, y, x) volume fractions in the order of
    :data:`pigments.ORDER` (summing to 1 where the layer exists), ``thickness_um`` (y, x)."""

    name: str
    fractions: np.ndarray
    thickness_um: np.ndarray


def fluorescence(layers: Sequence[Layer], lines: Sequence[str],
                 geometry: Geometry = Geometry(), per_layer: bool = False) -> np.ndarray:
    """Relative line intensities ``(line, y, x)`` of a stack (``layers[0]`` on top).

    Units: detected photons per incident photon per steradian-ish constant (the scanner
    scales them to counts).  float32.  ``per_layer``: each layer's contribution instead,
    ``(layer, line, y, x)`` (their sum over layers is the total).
    """
    lines = tuple(lines)
    parsed = [parse_line(n) for n in lines]
    elements = tuple(p.element for p in parsed)
    e0 = tuple(1000.0 * e for e in geometry.excitation_kev)
    w0 = np.asarray(geometry.excitation_weights, dtype=float)
    w0 = w0 / w0.sum()
    e_line = tuple(p.energy_ev for p in parsed)
    att = component_attenuation(e0 + e_line).astype(np.float32)      # (C, K + L)
    conc_tab = pg.element_concentration_table(elements).astype(np.float32)  # (C, L)
    sin_in = math.sin(math.radians(geometry.psi_in_deg))
    sin_out = math.sin(math.radians(geometry.psi_out_deg))
    det = np.array([detector_efficiency(n, geometry) for n in lines])
    # S[k, l] w_k D_l: everything that does not depend on position.
    sens = np.array([[line_cross_section(n, e) for n in lines] for e in e0])
    sens = (w0[:, None] * sens * det[None, :]).astype(np.float32)       # (K, L)

    h, w = layers[0].thickness_um.shape
    n_l = len(lines)
    fractions = [layer.fractions.reshape(len(pg.ORDER), -1) for layer in layers]
    thickness = [(layer.thickness_um.reshape(-1) * 1e-4).astype(np.float32) for layer in layers]  # cm
    total = np.empty((len(layers) if per_layer else 1, n_l, h * w), dtype=np.float32)
    # pixel blocks bound the memory of the (line, pixel) work arrays for very large images
    step = _BLOCK
    for start in range(0, h * w, step):
        sl = slice(start, min(start + step, h * w))
        total[..., sl] = _fluorescence_block([f[:, sl] for f in fractions], [t[sl] for t in thickness],
                                             att, conc_tab, sens, len(e0), sin_in, sin_out, per_layer)
    return total.reshape(-1, n_l, h, w) if per_layer else total.reshape(n_l, h, w)


def _fluorescence_block(fractions, thickness, att, conc_tab, sens, n_k, sin_in, sin_out,
                        per_layer=False):
    """The layer sum of :func:`fluorescence` for a block of pixels: ``(line, pixel)``
    (``per_layer``: ``(layer, line, pixel)``, each layer's term)."""
    n_l = conc_tab.shape[1]
    n = thickness[0].shape[0]
    totals = np.zeros((len(fractions) if per_layer else 1, n_l, n), dtype=np.float32)
    # Transmission from the surface down to the current layer, for the incident beam
    # (per excitation energy) and for each line on its way out.  exp(−χt) factorises as
    # exp(−μ(E0)t/sinψ_in)·exp(−μ(E_ℓ)t/sinψ_out), so only (K + L) exponentials per pixel
    # and layer are needed, not K·L.
    trans_in = np.ones((n_k, n), dtype=np.float32)
    trans_out = np.ones((n_l, n), dtype=np.float32)
    chi = np.empty((n_l, n), dtype=np.float32)
    slab = np.empty((n_l, n), dtype=np.float32)
    for j, (v, t) in enumerate(zip(fractions, thickness)):
        total = totals[j if per_layer else 0]
        v = v.astype(np.float32, copy=False)
        mu = att.T @ v                                                   # (K + L, N) cm⁻¹
        conc = conc_tab.T @ v                                            # (L, N) g/cm³
        mu_in = mu[:n_k] / np.float32(sin_in)
        mu_out = mu[n_k:] / np.float32(sin_out)
        a = np.exp(-mu_in * t)                                           # (K, N)
        b = np.exp(-mu_out * t)                                          # (L, N)
        conc *= trans_out
        for k in range(n_k):
            # [1 − exp(−χt)]/χ with χ = μ_in,k + μ_out,ℓ
            np.add(mu_out, mu_in[k], out=chi)
            np.multiply(b, a[k], out=slab)
            np.subtract(1.0, slab, out=slab)
            np.maximum(chi, 1e-12, out=chi)
            np.divide(slab, chi, out=slab)
            slab *= conc
            slab *= trans_in[k]
            slab *= sens[k][:, None]
            total += slab
        trans_in *= a
        trans_out *= b
    return totals if per_layer else totals[0]


# --- colour ------------------------------------------------------------------------

def km_reflectance(fractions: np.ndarray) -> np.ndarray:
    """Single-constant Kubelka–Munk reflectance ``(3, y, x)`` of an opaque layer whose
    volume fractions are ``fractions`` (component, y, x); binders do not colour."""
    refl, is_pig = pg.reflectance_table()
    r = np.clip(refl[is_pig], 1e-3, 0.999)
    ks = ((1 - r) ** 2 / (2 * r)).astype(np.float32)                       # (P, 3)
    v = fractions[is_pig].reshape(int(is_pig.sum()), -1).astype(np.float32)
    vsum = v.sum(0, keepdims=True)
    v = v / np.maximum(vsum, 1e-6)
    ks_mix = ks.T @ v                                                        # (3, N)
    out = 1 + ks_mix - np.sqrt(ks_mix ** 2 + 2 * ks_mix)
    return out.reshape(3, *fractions.shape[1:])


def layer_visibility(layers: Sequence[Layer], hiding_um: float = 2.5) -> np.ndarray:
    """``(layer, y, x)``: the weight of each layer's colour in :func:`surface_reflectance`
    (its opacity times the transparency of every layer above; the bottom layer is opaque).
    Sums to 1 over layers: how much of each layer the photograph shows."""
    vis = np.empty((len(layers), *layers[0].thickness_um.shape), np.float64)
    above = np.ones(layers[0].thickness_um.shape, np.float64)
    for j, layer in enumerate(layers):
        alpha = 1.0 if j == len(layers) - 1 else 1.0 - np.exp(-layer.thickness_um / hiding_um)
        vis[j] = alpha * above
        above = above * (1.0 - alpha)
    return vis


def hidden_share(layers: Sequence[Layer], lines: Sequence[str], hiding_um: float = 2.5,
                 geometry: Geometry = Geometry()) -> np.ndarray:
    """``(line,)`` share of each line's signal, summed over the image, that comes from what
    the photograph does not show: each layer's fluorescence at a pixel weighted by
    ``1 − visibility`` of that layer there (:func:`layer_visibility`)::

        hidden_ℓ = Σ_p Σ_j I_ℓj(p) (1 − v_j(p)) / Σ_p Σ_j I_ℓj(p)

    0: all of the line's signal comes from the paint the photograph shows; 1: all from
    layers hidden under it (a ground, an underdrawing, an earlier composition).  Structure
    the visible paint imprints on a hidden layer's signal by attenuating it is not counted
    as visible."""
    per = fluorescence(layers, lines, geometry, per_layer=True).astype(np.float64)  # (L, l, y, x)
    hid = 1.0 - layer_visibility(layers, hiding_um)
    num = np.einsum("jlyx,jyx->l", per, hid)
    den = per.sum(axis=(0, 2, 3))
    return np.where(den > 0, num / np.maximum(den, 1e-300), 0.0).clip(0.0, 1.0)


def surface_reflectance(layers: Sequence[Layer], hiding_um: float = 2.5) -> np.ndarray:
    """Diffuse reflectance ``(3, y, x)`` seen from above: layers composited from the bottom,
    each with opacity ``1 − exp(−t / hiding_um)``."""
    r = None
    for layer in reversed(layers):
        r_layer = km_reflectance(layer.fractions)
        if r is None:
            r = r_layer
            continue
        alpha = 1.0 - np.exp(-layer.thickness_um / hiding_um)
        r = alpha[None] * r_layer + (1 - alpha[None]) * r
    return r.astype(np.float32)
