"""Pigments and binders of Old Master and 19th-century paintings.

Each component has a chemical make-up (a formula parsed by :func:`xraydb.chemparse`, or a
mixture of formulas for earths, glasses and lakes, plus trace elements typical of the
natural or manufactured material), a density (g/cm³) and, for pigments, a diffuse
reflectance colour ``R∞`` (linear R, G, B in [0, 1], an optically thick layer of the
pigment in oil) used by the Kubelka–Munk mixing of :func:`maxrf_bench_datasets.simulator.physics.km_reflectance`.

Mass fractions are computed from the formulas with the atomic masses of ``xraydb``; no
composition is typed by hand except the mixtures' proportions and the trace levels, which
follow the usual descriptions of these materials (e.g. Eastaugh et al., *Pigment
Compendium*): ochres are iron oxides in clay with Ti/Mn/K traces, smalt is a potassium
glass coloured by cobalt with Ni/As/Bi impurities, chalk carries strontium.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Mapping

import numpy as np
import xraydb


def formula_mass_fractions(formula: str) -> dict[str, float]:
    """Mass fraction of every element of a chemical formula (``"Pb3(CO3)2(OH)2"``)."""
    counts = xraydb.chemparse(formula)
    masses = {el: n * xraydb.atomic_mass(el) for el, n in counts.items()}
    total = sum(masses.values())
    return {el: m / total for el, m in masses.items()}


def mixture_mass_fractions(parts: Mapping[str, float], traces: Mapping[str, float] | None = None
                           ) -> dict[str, float]:
    """Mass fractions of a mixture of formulas (``{formula: mass share}``) with trace
    elements (``{element: mass fraction}``) added and everything renormalised to 1."""
    out: dict[str, float] = {}
    total_share = sum(parts.values())
    for formula, share in parts.items():
        for el, w in formula_mass_fractions(formula).items():
            out[el] = out.get(el, 0.0) + w * share / total_share
    for el, w in (traces or {}).items():
        out[el] = out.get(el, 0.0) + w
    s = sum(out.values())
    return {el: w / s for el, w in out.items()}


@dataclass(frozen=True)
class Component:
    """A paint component (pigment, filler or binder).

    ``composition``: element → mass fraction (sums to 1); ``density`` in g/cm³;
    ``reflectance``: R∞ (R, G, B) of an opaque layer, ``None`` for a transparent binder.
    """

    name: str
    composition: Mapping[str, float]
    density: float
    reflectance: tuple[float, float, float] | None
    description: str = ""
    century: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)


def _p(name, parts, density, refl, description, century="", traces=None):
    if isinstance(parts, str):
        comp = mixture_mass_fractions({parts: 1.0}, traces)
    else:
        comp = mixture_mass_fractions(parts, traces)
    return Component(name, comp, density, refl, description, century)


KAOLINITE = "Al2Si2O5(OH)4"

#: Every component the simulator knows, by name.  Reflectances are linear (not sRGB).
COMPONENTS: dict[str, Component] = {c.name: c for c in [
    # --- whites and grounds ---------------------------------------------------------
    _p("lead_white", "Pb3(CO3)2(OH)2", 6.8, (0.88, 0.87, 0.82),
       "basic lead carbonate, 2PbCO3·Pb(OH)2", "antiquity–20th c."),
    _p("chalk", "CaCO3", 2.7, (0.86, 0.85, 0.80),
       "calcium carbonate ground (northern Europe), Sr trace", "ground", traces={"Sr": 0.002}),
    _p("gypsum", "CaSO4(H2O)2", 2.3, (0.88, 0.87, 0.83),
       "calcium sulphate dihydrate, gesso ground (Italy), Sr trace", "ground",
       traces={"Sr": 0.003}),
    _p("zinc_white", "ZnO", 5.6, (0.90, 0.90, 0.89), "zinc oxide", "19th c.–"),
    _p("barite", "BaSO4", 4.5, (0.87, 0.87, 0.85), "barium sulphate filler / blanc fixe",
       "19th c.–"),
    # --- reds ----------------------------------------------------------------------
    _p("vermilion", "HgS", 8.1, (0.55, 0.055, 0.04), "mercury sulphide"),
    _p("red_lead", "Pb3O4", 8.9, (0.80, 0.25, 0.06), "minium, lead tetroxide"),
    _p("red_ochre", {"Fe2O3": 0.6, KAOLINITE: 0.37, "TiO2": 0.015, "K2O": 0.015}, 4.0,
       (0.40, 0.13, 0.07), "hematite in clay (Ti, K traces)"),
    _p("red_lake", {"Al(OH)3": 0.7, "KAl(SO4)2(H2O)12": 0.15, "C14H8O4": 0.15}, 1.7,
       (0.42, 0.04, 0.10), "madder/cochineal dye on an alum (K, Al, S) substrate"),
    # --- yellows -------------------------------------------------------------------
    _p("lead_tin_yellow", "Pb2SnO4", 8.0, (0.85, 0.74, 0.22), "lead–tin yellow type I",
       "14th–18th c."),
    _p("naples_yellow", "Pb2Sb2O7", 6.6, (0.86, 0.70, 0.35), "lead antimonate", "17th c.–"),
    _p("yellow_ochre", {"FeO(OH)": 0.35, KAOLINITE: 0.6, "TiO2": 0.015, "MnO2": 0.01,
                        "K2O": 0.025}, 3.0, (0.58, 0.40, 0.13), "goethite in clay"),
    _p("orpiment", "As2S3", 3.5, (0.85, 0.70, 0.12), "arsenic sulphide"),
    _p("chrome_yellow", "PbCrO4", 6.0, (0.86, 0.62, 0.04), "lead chromate", "19th c.–"),
    # --- browns and blacks -----------------------------------------------------------
    _p("raw_umber", {"Fe2O3": 0.45, "MnO2": 0.15, KAOLINITE: 0.37, "K2O": 0.02,
                     "TiO2": 0.01}, 3.5, (0.20, 0.14, 0.085), "iron and manganese oxides in clay"),
    _p("bone_black", {"Ca5(PO4)3(OH)": 0.85, "C": 0.15}, 2.6, (0.03, 0.028, 0.026),
       "charred bone: hydroxyapatite and carbon"),
    _p("lamp_black", "C", 1.8, (0.02, 0.02, 0.02), "soot (carbon): no XRF signal"),
    # --- blues ---------------------------------------------------------------------
    _p("azurite", "Cu3(CO3)2(OH)2", 3.8, (0.08, 0.20, 0.50), "basic copper carbonate"),
    _p("ultramarine", "Na8Al6Si6O24S2", 2.4, (0.06, 0.08, 0.48), "lazurite (lapis lazuli)"),
    _p("smalt", {"SiO2": 0.65, "K2O": 0.17, "CoO": 0.09, "As2O3": 0.04, "NiO": 0.015,
                 "Bi2O3": 0.005, "Fe2O3": 0.01, "CaO": 0.02}, 2.5, (0.17, 0.22, 0.52),
       "potassium glass coloured by cobalt (Ni, As, Bi impurities)", "16th–18th c."),
    _p("prussian_blue", "Fe7C18N18", 1.8, (0.03, 0.06, 0.20), "iron(III) hexacyanoferrate",
       "18th c.–"),
    # --- greens --------------------------------------------------------------------
    _p("malachite", "Cu2CO3(OH)2", 4.0, (0.15, 0.45, 0.25), "basic copper carbonate"),
    _p("verdigris", "Cu(C2H3O2)2", 1.9, (0.05, 0.38, 0.30), "copper acetate (copper resinate glazes)"),
    _p("green_earth", "KMgFeSi4O10(OH)2", 2.8, (0.30, 0.38, 0.26), "celadonite/glauconite"),
    _p("emerald_green", "Cu4As6C4H6O16", 3.1, (0.10, 0.62, 0.38), "copper acetoarsenite",
       "19th c."),
    # --- binders (transparent) ---------------------------------------------------------
    Component("linseed_oil", formula_mass_fractions("C18H32O2"), 0.93, None, "drying-oil binder"),
    Component("animal_glue", formula_mass_fractions("C2H5NO2"), 1.3, None,
              "protein binder of grounds (collagen, approximated by its commonest residue)"),
]}

#: The pigments (components with a colour).
PIGMENTS = tuple(n for n, c in COMPONENTS.items() if c.reflectance is not None)
BINDERS = tuple(n for n, c in COMPONENTS.items() if c.reflectance is None)
ORDER = tuple(COMPONENTS)            # index order of the volume-fraction arrays
INDEX = {n: i for i, n in enumerate(ORDER)}


def get(name: str) -> Component:
    try:
        return COMPONENTS[name]
    except KeyError:
        raise KeyError(f"unknown pigment {name!r}; known: {', '.join(ORDER)}") from None


@lru_cache(maxsize=None)
def element_concentration_table(elements: tuple[str, ...]) -> np.ndarray:
    """``(component, element)`` grams of element per cm³ of pure component: ρ_c · w_ce."""
    table = np.zeros((len(ORDER), len(elements)))
    for i, name in enumerate(ORDER):
        comp = COMPONENTS[name]
        for j, el in enumerate(elements):
            table[i, j] = comp.density * comp.composition.get(el, 0.0)
    return table


def reflectance_table() -> tuple[np.ndarray, np.ndarray]:
    """``(component, 3)`` R∞ per channel (binders 0) and a ``(component,)`` pigment mask."""
    refl = np.zeros((len(ORDER), 3))
    is_pigment = np.zeros(len(ORDER), dtype=bool)
    for i, name in enumerate(ORDER):
        r = COMPONENTS[name].reflectance
        if r is not None:
            refl[i] = r
            is_pigment[i] = True
    return refl, is_pigment
