"""Element-line labels: parse what scanner software writes, and where the lines lie.

Exporters name element maps in many ways (``Pb-LB.tif``, ``Zn Kb.png``, ``Hg_La``,
``Pb L``, ``Ca``, ``As-KB``, ``emap-Cu``, ``sample3_Fe_K-L3``).  :func:`parse_label` reads
the element and the line family from such a label and gives the scan's element name
``<Symbol>_<Family>`` (``Pb_L``, ``Zn_K``); the sub-line (``a``, ``b``, ``a1``…) is kept
for integrating raw spectra and for telling two maps of one family apart.

**The rule for a bare symbol** (``Ca``, ``emap-Cu``): the family a laboratory MA-XRF
scanner (≤ 50 kV tube, Si drift detector) measures for that element, which is the K
family when the element's K edge lies at or below :data:`K_EDGE_LIMIT_KEV` = 30 keV
(Z ≤ 50: Na … Sn, so Ca, Fe, Cu, Zn, As, Sr, Cd, Sn get K) and the L family above it
(Sb, Ba, W, Au, Hg, Pb, Bi… get L).  Above 30 keV a 50 kV tube excites the K shell
weakly and the detector's efficiency has dropped, so scanner software maps the L lines.
The edge energies come from ``xraydb``, not from a table typed here.

Elements lighter than Na (Z < 11) are never read as symbols: their lines are absorbed
in air and no MA-XRF scanner maps them, while one-letter tokens such as ``B``, ``C`` or
``O`` are common in file names.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

#: K edge (keV) at or below which a bare symbol gets the K family (see module docstring).
K_EDGE_LIMIT_KEV = 30.0
#: lightest element read as a symbol (Na): lighter ones are not measurable in air.
MIN_Z = 11
#: the principal Siegbahn line of each (family, sub-line group), used for ROI windows.
PRINCIPAL_LINE = {("K", "a"): "Ka1", ("K", "b"): "Kb1", ("L", "a"): "La1", ("L", "b"): "Lb1",
                  ("L", "g"): "Lg1", ("L", "l"): "Ll", ("L", "n"): "Ln", ("M", "a"): "Ma",
                  ("M", "b"): "Mb", ("M", "g"): "Mg", ("M", "z"): "Mz"}
#: the default sub-line group of a family: the strongest line scanners map (Kα, Lα, Mα).
DEFAULT_GROUP = {"K": "a", "L": "a", "M": "a"}

# Fano-limited SDD resolution: FWHM² = FWHM_ref² + (2√(2 ln 2))² · F · ε · (E − E_ref),
# with Fano factor F ≈ 0.114 and ε = 3.85 eV per electron-hole pair in silicon.
_FANO_SLOPE_EV = (2 * np.sqrt(2 * np.log(2))) ** 2 * 0.114 * 3.85
MN_KA_KEV = 5.8987


class LabelError(ValueError):
    """A label from which no element line can be read."""


@dataclass(frozen=True)
class LineLabel:
    """One parsed label: ``element`` symbol, line ``family`` (K/L/M), optional ``subline``
    (``a``, ``b``, ``a1``, ``l3m5``…, lower case), the original ``label`` and whether the
    family was written (``explicit``) or chosen by the bare-symbol rule."""

    element: str
    family: str
    subline: str = ""
    label: str = ""
    explicit: bool = True
    label_pair: bool = False  # symbol and line were separate tokens ("Fe_K", "Zn Kb")

    @property
    def name(self) -> str:
        """The scan's element name, e.g. ``Pb_L``."""
        return f"{self.element}_{self.family}"

    @property
    def long_name(self) -> str:
        """The name with the sub-line group (``Pb_La``), used when two maps share a family."""
        group = self.group
        return f"{self.element}_{self.family}{group}" if self.subline else self.name

    @property
    def group(self) -> str:
        """The Siegbahn group letter of the sub-line (``a``, ``b``, ``g``…; the family's
        default when none was written).  IUPAC sub-lines map to their Siegbahn group."""
        s = self.subline
        if (self.family, s) in _IUPAC_GROUP:
            return _IUPAC_GROUP[(self.family, s)]
        if s and s[0] in "abglnz":
            return s[0]
        return DEFAULT_GROUP[self.family]


# IUPAC transitions written as e.g. K-L3 or L3-M5 → Siegbahn group (for ROI windows).
_IUPAC_GROUP = {("K", "l3"): "a", ("K", "l2"): "a", ("K", "m3"): "b", ("K", "m2"): "b",
                ("L", "3m5"): "a", ("L", "3m4"): "a", ("L", "2m4"): "b", ("L", "3n5"): "b",
                ("L", "2n4"): "g"}

_SEPARATORS = re.compile(r"[\s_\-.,;:()\[\]{}+=#]+")
# K-L3, L3-M5, L2-M4 (IUPAC): glue before splitting on '-' so "K" is not read as potassium.
_IUPAC = re.compile(r"(?<![A-Za-z])([KkLlMm][1-5]?)-([LlMmNn][1-7])(?![A-Za-z0-9])")
# A line token: family letter then an optional Siegbahn group (+ index) or IUPAC sub-shells.
_LINE_TOKEN = re.compile(r"^([KLMklm])((?:[abglnzABGLNZ](?:\d{1,2})?)|(?:\d?[LMNlmn]\d)|(?:[1-5]))?$")
# A symbol glued to its line: FeKa, PbL, HgLa1 (case as written: the symbol must be Xx).
_GLUED = re.compile(r"^([A-Z][a-z]?)([KLM])((?:[abglnz]\d{0,2})?)$")


@functools.lru_cache(maxsize=None)
def _symbols() -> dict[str, int]:
    """Upper-case symbol → atomic number for Z ≥ :data:`MIN_Z` (from xraydb)."""
    import xraydb

    out = {}
    for z in range(MIN_Z, 99):
        try:
            out[xraydb.atomic_symbol(z).upper()] = z
        except Exception:  # noqa: BLE001 - xraydb's table may end earlier
            break
    return out


def element_symbol(token: str) -> str | None:
    """``token`` read as an element symbol (any case), capitalised; ``None`` if it is not one."""
    z = _symbols().get(token.upper())
    if z is None:
        return None
    import xraydb

    return xraydb.atomic_symbol(z)


@functools.lru_cache(maxsize=None)
def default_family(symbol: str) -> str:
    """The family a scanner maps for a bare symbol: K when the K edge ≤ 30 keV, else L."""
    import xraydb

    k_edge_kev = xraydb.xray_edge(symbol, "K").energy / 1000.0
    return "K" if k_edge_kev <= K_EDGE_LIMIT_KEV else "L"


def _line_token(token: str) -> tuple[str, str] | None:
    m = _LINE_TOKEN.match(token)
    if not m:
        return None
    return m.group(1).upper(), (m.group(2) or "").lower()


def parse_label(label: str, *, strict: bool = False) -> LineLabel:
    """Parse an element-line label (a file stem or a channel name).

    Tokens are read from the end, because exporters prefix the sample name
    (``sample3_Fe_K``, ``emap-Cu``): the first line token preceded by a symbol gives
    (element, family); otherwise the last symbol gets :func:`default_family`.
    ``strict=True`` accepts only ``Symbol_Family[subline]`` (PyXRF channel names), so
    channels such as ``compton`` or ``Ca_K-Ca_K`` (pile-up) are refused.

    Raises :class:`LabelError` with what was expected when nothing can be read.
    """
    text = str(label).strip()
    if strict:
        m = re.fullmatch(r"([A-Z][a-z]?)_([KLMklm])([a-z]{1,2}\d{0,2})?", text)
        symbol = element_symbol(m.group(1)) if m else None
        if not m or symbol != m.group(1):
            raise LabelError(f"expected a channel name like 'Pb_L' or 'Ca_K', found {label!r}")
        return _checked(LineLabel(symbol, m.group(2).upper(), (m.group(3) or "").lower(), text))
    glued = _IUPAC.sub(lambda m: m.group(1) + m.group(2), text)
    tokens = [t for t in _SEPARATORS.split(glued) if t]
    first_error: LabelError | None = None
    for i in range(len(tokens) - 1, -1, -1):
        for candidate in _candidates(tokens, i, text):
            try:
                return _checked(candidate)
            except LabelError as exc:
                if candidate.explicit and candidate.label_pair:
                    raise  # "Ca_M": the label names a line the element lacks
                first_error = first_error or exc  # e.g. glued "KL": try further tokens
    if first_error is not None:
        raise first_error
    raise LabelError(
        f"cannot read an element line from {label!r}: expected an element symbol (Na…Cf) "
        "optionally followed by a line (K, Ka, Kb, L, La, Lb, M…), e.g. 'Pb-L', 'Zn Kb', 'Ca'"
    )


def _candidates(tokens: list[str], i: int, text: str):
    """Readings of token ``i`` in order of preference: symbol + line, glued, bare symbol."""
    tok = tokens[i]
    line = _line_token(tok)
    if line is not None and i > 0:
        symbol = element_symbol(tokens[i - 1])
        if symbol is not None:
            yield LineLabel(symbol, line[0], line[1], text, label_pair=True)
    m = _GLUED.match(tok)
    if m and element_symbol(m.group(1)) == m.group(1):
        yield LineLabel(m.group(1), m.group(2), m.group(3).lower(), text)
    symbol = element_symbol(tok)
    if symbol is not None:
        yield LineLabel(symbol, default_family(symbol), "", text, explicit=False)


def _checked(lab: LineLabel) -> LineLabel:
    """Refuse lines the element does not have (``Ca_M``, ``Na_L``): a misread label."""
    if not line_energies_kev(lab.element, lab.family):
        raise LabelError(f"{lab.label!r} reads as {lab.name}, but {lab.element} has no "
                         f"{lab.family} lines above 0.5 keV; expected e.g. "
                         f"{lab.element}_{default_family(lab.element)}")
    return lab


@functools.lru_cache(maxsize=None)
def line_energies_kev(symbol: str, family: str) -> dict[str, tuple[float, float, str]]:
    """Siegbahn lines of ``symbol`` in ``family``: name → (energy keV, relative intensity,
    initial level), lines below 0.5 keV left out (not measurable in air)."""
    import xraydb

    out = {}
    for name, line in xraydb.xray_lines(symbol).items():
        if name.startswith(family) and line.energy >= 500.0:
            out[name] = (line.energy / 1000.0, float(line.intensity), str(line.initial_level))
    return out


def fwhm_kev(energy_kev, fwhm_mnka_ev: float = 145.0):
    """Detector peak FWHM (keV) at ``energy_kev`` from the FWHM at Mn Kα (eV), Fano-limited
    SDD model (the same model as Bruker's SigmaAbs/SigmaLin and HyperSpy use)."""
    e_ev = np.asarray(energy_kev, dtype=float) * 1000.0
    fwhm2 = fwhm_mnka_ev ** 2 + _FANO_SLOPE_EV * (e_ev - MN_KA_KEV * 1000.0)
    # the electronic-noise floor keeps low-energy peaks from collapsing to zero width
    return np.sqrt(np.maximum(fwhm2, (0.4 * fwhm_mnka_ev) ** 2)) / 1000.0


def line_window_kev(lab: LineLabel, fwhm_mnka_ev: float = 145.0) -> tuple[float, float, float]:
    """Integration window ``(low, centre, high)`` in keV for a label's line group.

    The centre is the intensity-weighted energy of the group's lines that share the
    principal line's initial level (Kα1+Kα2; Lα1+Lα2; Lβ1 alone…); the window spans
    ±1 FWHM (≈ ±2.35 σ, 98 % of a Gaussian peak) beyond the outermost of those lines.
    """
    lines = line_energies_kev(lab.element, lab.family)
    group = lab.group
    principal = PRINCIPAL_LINE.get((lab.family, group))
    if principal not in lines:
        raise LabelError(f"{lab.label!r}: {lab.element} has no {lab.family}{group} line "
                         f"(lines: {', '.join(sorted(lines)) or 'none'})")
    level = lines[principal][2]
    members = {n: v for n, v in lines.items()
               if n.startswith(lab.family + group) and v[2] == level and v[1] > 0.02}
    if lab.subline[1:].isdigit() and lab.family + lab.subline in lines:  # e.g. Ka1 only
        members = {lab.family + lab.subline: lines[lab.family + lab.subline]}
    energies = np.array([v[0] for v in members.values()])
    weights = np.array([v[1] for v in members.values()])
    centre = float((energies * weights).sum() / weights.sum())
    half = float(fwhm_kev(centre, fwhm_mnka_ev))
    return float(energies.min() - half), centre, float(energies.max() + half)
