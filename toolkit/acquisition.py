"""How much scan time a photograph buys: the acquisition trade-off protocol.

``--protocol acquisition`` asks the question a heritage scientist brings: *how much faster
may I scan, with this photograph, before the maps get worse than a full high-resolution
scan?*  It needs a noise-free expected-count truth (``maps_clean`` in counts, as the
simulator writes, or a user's own).

For each relative scan time ``t`` (default 1, 1/4, 1/16, 1/64 of the HR scan's time) the
low-resolution scan is synthesised from the expected counts with its own Poisson noise.
``maps_clean`` holds the expected counts of one HR pixel, i.e. per HR dwell time
(``simulator_dwell_ms``).  An LR scan of relative time ``t`` has ``s²`` times fewer pixels,
so each LR pixel is counted for ``t·s²`` HR dwells; through the run's operator ``U``
(``down`` keeps units: weights sum to 1) its expected count is ``λ_LR = t·s²·U(maps_clean)``
and::

    N_LR ~ Poisson(λ_LR · G),   G = max(0, 1 + k·z)       (k = the scan's ``scanner_gain_cv``, else 0)
    maps_lr = N_LR / (t·s²)                               (counts per HR dwell, the HR maps' unit)

then normalised with the HR scan's own offset and span, as in the ``full`` protocol.  At
``t = 1`` the LR scan takes as long as the HR scan.  ``G`` reproduces the simulator's
per-pixel multiplicative excess, so both scans carry the same kind of noise (row jitter,
a positioning error of the HR scan, is not added to the LR scan).

Methods see the synthetic LR maps, the photograph and the operator, never ``maps_clean``.
Every method output is scored against the noise-free truth (``truth`` = ``clean``); the HR
scan's own distance to it is the reference line (the manifest's ``noise_ceiling_db`` and
``acquisition.reference``).  The noise of the LR scan is drawn from ``noise_seed`` (one draw
per dataset and scan time, the same for every method and method seed), so ``--seeds``
measures the methods' spread on one acquisition.

Rows of ``results.csv``: ``protocol`` = ``acquisition``, ``scan_time`` = ``t`` as a decimal
number.  Internally a scan time is its own protocol key ``acquisition-1_4`` (the run
directory's ``D@acquisition-1_4``).

``--acquire dwell`` (ours) makes the faster scan the other way, at the HR step with ``t``
times the dwell (:func:`short_dwell_scan`: Poisson counts of ``t`` dwells, the scan's gain
excess and row jitter), and gives the methods its ``s × s`` block means (the block-mean
operator only: a coarse continuous scan is not a binning of a fine one).  Each binned pixel
then has ``t·s²`` dwells of counts, as the coarse scan's.  The host keeps the HR-step scan
itself (``Prepared.maps_dwell``, never given to a method) and the variant ``+F`` fuses a
method's output with it pixel by pixel by its known counting noise
(:func:`maxrf_bench.noise.fuse_dwell`); the row ``HR step, t× dwell`` is then that very scan.

The **break-even scan time** of a method is the smallest ``t`` at which its PSNR against the
noise-free truth reaches the HR scan's, interpolated linearly in ``log t`` between the two
measured times around the crossing; ``never`` where no measured time reaches it, and
``≤ t_min`` where even the shortest does.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from .errors import ConfigError
from .noise import gain_cv, scanner_noise

PROTOCOL = "acquisition"
DEFAULT_SCAN_TIMES = "1,1/4,1/16,1/64"
#: ``--acquire``: a coarser step through the run's operator, or the HR step with a shorter dwell
ACQUIRE = ("coarse", "dwell")
#: the salt of a short-dwell scan's noise (:func:`short_dwell_reference`, ``--acquire dwell``)
_DWELL_SALT = 0xD3E11


# --- scan times -----------------------------------------------------------------------

#: Scan times are kept as fractions with denominators up to this (and refused outside
#: ``[1/_MAX_RATIO, _MAX_RATIO]``, where the Poisson draw or the tables' ``1/n`` break).
_MAX_RATIO = 1 << 20


def parse_scan_times(text: str | list | None) -> list[Fraction]:
    """``"1,1/4,1/16"`` → fractions, largest first; refuses non-positive or repeated times."""
    # None: the default; an empty --scan-times "" is refused below (no time), not the default
    items = text if isinstance(text, (list, tuple)) else (
        DEFAULT_SCAN_TIMES if text is None else str(text)).split(",")
    out: list[Fraction] = []
    for item in items:
        raw = str(item).strip()
        if not raw:
            continue
        try:
            exact = Fraction(raw)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"--scan-times expects comma-separated positive fractions of the HR "
                              f"scan's time (e.g. 1,1/4,1/16), found {raw!r}") from None
        if exact <= 0:
            raise ConfigError(f"--scan-times expects positive times, found {raw!r}")
        if not Fraction(1, _MAX_RATIO) <= exact <= _MAX_RATIO:
            raise ConfigError(f"--scan-times expects times between 1/{_MAX_RATIO} and {_MAX_RATIO} of "
                              f"the HR scan's, found {raw!r}")
        t = exact.limit_denominator(_MAX_RATIO)
        if t in out:
            raise ConfigError(f"--scan-times lists {raw} twice")
        out.append(t)
    if not out:
        raise ConfigError("--scan-times expects at least one time (e.g. 1,1/4,1/16,1/64)")
    return sorted(out, reverse=True)


def time_tag(t: Fraction) -> str:
    """``1/4`` → ``1_4``; ``1`` → ``1`` (a directory-safe name)."""
    return str(t.numerator) if t.denominator == 1 else f"{t.numerator}_{t.denominator}"


def time_text(t: float | Fraction) -> str:
    """``0.25`` → ``1/4`` for tables (``t ≥ 1`` and non-unit fractions as decimals)."""
    f = Fraction(float(t)).limit_denominator(_MAX_RATIO)
    if f.numerator == 1 and f.denominator > 1:
        return f"1/{f.denominator}"
    if f.denominator == 1:
        return str(f.numerator)
    inv = 1.0 / float(t)
    return f"1/{inv:.3g}" if float(t) < 1 else f"{float(t):.3g}"


def protocol_key(t: Fraction) -> str:
    return f"{PROTOCOL}-{time_tag(t)}"


def split_protocol(protocol: str) -> tuple[str, str]:
    """A cell's protocol → ``(protocol, scan_time)`` of its results rows: ``acquisition-1_4``
    → ``("acquisition", "0.25")``; every other protocol → ``(protocol, "")``."""
    if protocol.startswith(PROTOCOL + "-"):
        tag = protocol[len(PROTOCOL) + 1:]
        num, _, den = tag.partition("_")
        return PROTOCOL, repr(float(Fraction(int(num), int(den or 1))))
    return protocol, ""


# --- the synthetic LR scans -----------------------------------------------------------

def _noise_rng(seed: int, name: str, t: Fraction, salt: int = 0xACC) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(name.encode()), t.numerator, t.denominator,
                                  salt])


def _jitter_rows(h: int, rng: np.random.Generator, std_px: float):
    """The rows a jittered scan reads and its interpolation weights: ``(i0, i1, f)``."""
    pos = np.clip(np.arange(h) + std_px * rng.standard_normal(h), 0, h - 1)
    i0 = np.floor(pos).astype(int)
    return i0, np.minimum(i0 + 1, h - 1), pos - i0


def _shift_rows(maps: np.ndarray, rows) -> np.ndarray:
    i0, i1, f = rows
    f = f.astype(maps.dtype)[:, None]
    return maps[..., i0, :] * (1 - f) + maps[..., i1, :] * f


def row_jitter(maps: np.ndarray, rng: np.random.Generator, std_px: float) -> np.ndarray:
    """The scanner's row positioning jitter: every row of ``(…, y, x)`` maps is re-sampled at
    a random sub-pixel offset in y (std ``std_px``; linear interpolation between neighbouring
    rows), the same offset for all elements — as the simulator's scanner and the protocol's
    short-dwell scans (:func:`short_dwell_maps`) apply it."""
    if std_px <= 0:
        return maps
    return _shift_rows(maps, _jitter_rows(maps.shape[-2], rng, std_px))


def short_dwell_maps(clean_maps, t: float, rng: np.random.Generator, gain_cv: float = 0.0,
                     jitter_px: float = 0.0):
    """The other way to scan ``t`` times faster: the HR step with ``t`` times the dwell, one
    element map at a time from an iterable of expected-count maps (counts per HR dwell; one
    map in memory at a time): each re-sampled with the row jitter (the same rows for every
    element), the gain excess, then Poisson counts of ``t`` dwells.  At ``t = 1`` a fresh HR
    scan with the scanner's recorded noise (``scanner_gain_cv``, ``scanner_jitter_px``)."""
    rows = None
    for c in clean_maps:
        lam = np.asarray(c, np.float64)
        if jitter_px > 0:
            rows = rows if rows is not None else _jitter_rows(lam.shape[-2], rng, jitter_px)
            lam = _shift_rows(lam, rows)
        lam = lam * float(t)
        if gain_cv > 0:
            lam = lam * np.maximum(1.0 + gain_cv * rng.standard_normal(lam.shape), 0.0)
        yield rng.poisson(np.maximum(lam, 0.0)).astype(np.float64) / float(t)


def short_dwell_scan(clean_counts: np.ndarray, t: float, rng: np.random.Generator,
                     gain_cv: float = 0.0, jitter_px: float = 0.0) -> np.ndarray:
    """:func:`short_dwell_maps` as one ``(element, y, x)`` cube."""
    return np.stack(list(short_dwell_maps(clean_counts, t, rng, gain_cv, jitter_px)))


def require_clean_counts(prep, protocol: str = PROTOCOL) -> np.ndarray:
    """The scan's noise-free expected counts ``(element, y, x)``, or one clear refusal."""
    scan = prep.scan
    if "maps_clean" not in scan or "maps" not in scan:
        raise ConfigError(
            f"--protocol {protocol} needs a noise-free expected-count truth ('maps_clean' in counts, "
            f"beside the measured 'maps', as `maxrf-bench simulate` writes); scan {prep.name!r} has "
            f"{'no maps_clean' if 'maps' in scan else 'no high-resolution maps'}")
    clean = np.asarray(scan["maps_clean"].values, np.float64)
    if not np.isfinite(clean).all() or (clean < 0).any():
        raise ConfigError(f"--protocol {protocol}: 'maps_clean' of scan {prep.name!r} must be "
                          "expected counts (finite, ≥ 0), found negative or non-finite values")
    return clean


def synthesise_lr(clean_counts: np.ndarray, operator, t: Fraction, rng: np.random.Generator,
                  gain_cv: float = 0.0) -> np.ndarray:
    """An LR scan of relative time ``t`` in counts per HR dwell (see the module docstring)."""
    k = float(t) * operator.scale ** 2
    lam = np.asarray(operator.down(clean_counts), np.float64) * k
    lam = np.maximum(lam, 0.0)
    if gain_cv > 0:
        lam = lam * np.maximum(1.0 + gain_cv * rng.standard_normal(lam.shape), 0.0)
    return rng.poisson(lam).astype(np.float64) / k


def acquisition_inputs(full, scan_times, noise_seed: int = 0, acquire: str = "coarse") -> list:
    """One :class:`Prepared` per scan time, derived from the ``full`` protocol's: the LR scan
    of a coarser step (``acquire`` ``coarse``) or the block means of an HR-step scan of a
    shorter dwell, kept beside them as ``maps_dwell`` (``dwell``; the module docstring)."""
    if acquire not in ACQUIRE:
        raise ConfigError(f"--acquire expects {' or '.join(ACQUIRE)}, found {acquire!r}")
    if acquire == "dwell" and full.operator.name != "blockmean":
        raise ConfigError(f"--acquire dwell bins an HR-step scan into the LR maps, which is the "
                          f"block-mean operator; found --operator {full.operator.name}")
    clean = require_clean_counts(full)
    gain, jitter_px = scanner_noise(full.scan.attrs)
    off, span = full.offset[:, None, None], full.span[:, None, None]
    out = []
    for t in scan_times:
        dwell = None
        if acquire == "dwell":
            hr = short_dwell_scan(clean, float(t), _noise_rng(noise_seed, full.name, t, salt=_DWELL_SALT),
                                  gain, jitter_px)
            counts = np.asarray(full.operator.down(hr), np.float64)
            dwell = ((hr - off) / span).astype(np.float32)
        else:
            counts = synthesise_lr(clean, full.operator, t, _noise_rng(noise_seed, full.name, t), gain)
        lr = ((counts - off) / span).astype(np.float32)
        maps_lr = full.maps_lr.copy(data=lr)
        out.append(replace(full, maps_lr=maps_lr, protocol=protocol_key(t), maps_dwell=dwell))
    return out


def manifest_entry(prepared: list, noise_seed: int = 0) -> dict:
    """What the trade-off tables need beside ``results.csv``: per dataset the scan times,
    the HR scan's PSNR and RMSE (counts) against the noise-free truth, the spans, and per scan
    time the same scores of an HR-step scan of that shorter dwell (``short_dwell``, keyed by
    ``repr(t)``; :func:`short_dwell_reference`, or under ``--acquire dwell`` the scores of the
    very scan the methods' LR maps were binned from, and ``acquire`` = ``dwell``)."""
    out: dict = {}
    for p in prepared:
        base, st = split_protocol(p.protocol)
        if base != PROTOCOL:
            continue
        d = out.setdefault(p.name, {"scan_times": [], "span": p.span.tolist(),
                                    "gain_cv": gain_cv(p),
                                    "operator": p.operator.to_dict(), "elements": p.elements,
                                    "noise_seed": noise_seed})
        d["scan_times"].append(float(st))
        if p.maps_dwell is not None:
            d["acquire"] = "dwell"
        if p.truth_clean is not None:
            if "reference" not in d and p.truth is not None:
                d["reference"] = hr_reference(p)
            d.setdefault("short_dwell", {})[repr(float(st))] = (
                _clean_scores(p, p.maps_dwell) if p.maps_dwell is not None
                else short_dwell_reference(p, float(st), noise_seed))
    return {PROTOCOL: out} if out else {}


def hr_reference(p) -> dict:
    """The HR scan's own distance to the noise-free truth: PSNR (normalised, data range 1, as
    the ``psnr`` metric) and RMSE in counts (whole cube)."""
    return _clean_scores(p, p.truth)


def short_dwell_reference(p, t: float, noise_seed: int | None = 0) -> dict:
    """As :func:`hr_reference`, for an HR-step scan of ``t`` times the dwell
    (:func:`short_dwell_maps`) synthesised from ``p``'s noise-free truth with the scan's
    recorded gain excess and row jitter; its own noise, seeded by ``noise_seed``, the dataset
    and ``t``.  One element map in memory at a time."""
    off, span = np.asarray(p.offset, np.float64), np.asarray(p.span, np.float64)
    clean = (np.asarray(c, np.float64) * s + o for c, s, o in zip(p.truth_clean, span, off))
    rng = _noise_rng(noise_seed or 0, p.name, Fraction(t).limit_denominator(1 << 20), salt=_DWELL_SALT)
    maps = short_dwell_maps(clean, t, rng, *scanner_noise(p.scan.attrs))
    return _clean_scores(p, ((m - o) / s for m, s, o in zip(maps, span, off)))


def _clean_scores(p, maps) -> dict:
    """PSNR (whole cube and per element, normalised) and RMSE in counts of the normalised
    element ``maps`` (an iterable, one map at a time) against ``p``'s noise-free truth."""
    per = np.array([float(np.mean((np.asarray(m, np.float64) - np.asarray(c, np.float64)) ** 2))
                    for m, c in zip(maps, p.truth_clean)])
    mse = float(per.mean())
    return {"psnr": -10 * math.log10(mse) if mse > 0 else math.inf,
            "rmse_counts": float(np.sqrt(np.mean(per * np.asarray(p.span, np.float64) ** 2))),
            "psnr_elements": {e: (-10 * math.log10(float(m)) if m > 0 else math.inf)
                              for e, m in zip(p.elements, per)}}


# --- the trade-off table --------------------------------------------------------------

@dataclass
class Curve:
    """One method on one dataset: mean PSNR and RMSE (counts) over seeds per scan time."""

    dataset: str
    method: str
    times: list[float]
    psnr: list[float]
    psnr_std: list[float]
    rmse_counts: list[float]
    n: list[int]


def break_even(times: list[float], psnr: list[float], reference: float) -> float | None:
    """Smallest ``t`` whose PSNR reaches ``reference``, interpolated in ``log t``; ``None``:
    never; ``0.0`` is never returned (a curve above the line at its shortest time returns
    that time — shown as ``≤ t``)."""
    pts = sorted(zip(times, psnr))
    for i, (t, p) in enumerate(pts):
        if p >= reference:
            if i == 0:
                return t
            t0, p0 = pts[i - 1]
            f = (reference - p0) / (p - p0) if p != p0 else 1.0
            return float(math.exp(math.log(t0) + f * (math.log(t) - math.log(t0))))
    return None


def rmse_break_even_text(times: list[float], rmse: list[float], reference: float) -> str:
    """The break-even of an RMSE curve (counts; lower is better) against the HR scan's
    ``reference``: as :func:`break_even_text`, ``never (k× at t=T)`` with the ratio at the
    longest scan time, ``—`` when RMSE was not scored."""
    pts = [(t, r) for t, r in zip(times, rmse) if math.isfinite(r)]
    if not pts or not math.isfinite(reference) or reference <= 0:
        return "—"
    times, rmse = [t for t, _ in pts], [r for _, r in pts]
    text = break_even_text(times, [-r for r in rmse], -reference, decimal=False)
    if text != "never":
        return text
    t_max = max(times)
    return f"never ({rmse[times.index(t_max)] / reference:.2f}× at t={time_text(t_max)})"


def break_even_text(times: list[float], psnr: list[float], reference: float,
                    decimal: bool = True) -> str:
    """:func:`break_even` as the tables print it: ``never``, ``≤ t`` (already at the
    shortest time measured) or ``t (decimal)`` (``t`` alone without ``decimal``)."""
    t = break_even(times, psnr, reference)
    if t is None:
        return "never"
    if t == min(times):
        return f"≤ {time_text(t)}"
    return f"{time_text(t)} ({t:.3g})" if decimal else time_text(t)


def curves(results, manifest: dict) -> list[Curve]:
    """The trade-off curves of a run (``results``: :class:`Results`)."""
    info = (manifest or {}).get(PROTOCOL, {})
    acc: dict = {}
    for r in results.rows:
        if r["protocol"] != PROTOCOL or r["truth"] != "clean" or r["metric"] not in ("psnr", "rmse"):
            continue
        t = float(r.get("scan_time") or "nan")
        acc.setdefault((r["dataset"], r["method"]), {}).setdefault(t, {}).setdefault(
            (r["metric"], r["element"]), []).append(r["value"])
    out = []
    for (ds, method), by_t in acc.items():
        span = np.asarray(info.get(ds, {}).get("span", []), float)
        elements = None
        times, ps, sds, rc, ns = [], [], [], [], []
        for t in sorted(by_t):
            cell = by_t[t]
            vals = cell.get(("psnr", "all"), [])
            if not vals:
                continue
            times.append(t)
            ps.append(float(np.mean(vals)))
            sds.append(float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
            ns.append(len(vals))
            if elements is None:
                elements = sorted({e for (m, e) in cell if m == "rmse" and e != "all"})
            rc.append(_rmse_counts(cell, elements, span, info.get(ds, {}).get("elements")))
        if times:
            out.append(Curve(ds, method, times, ps, sds, rc, ns))
    return out


def _rmse_counts(cell: dict, elements: list[str], span: np.ndarray, order: list | None) -> float:
    """Whole-cube RMSE in counts from the per-element normalised RMSEs and the spans."""
    if not elements or span.size == 0:
        return math.nan
    names = order or elements
    sq = []
    for i, e in enumerate(names):
        v = cell.get(("rmse", e))
        if v is None or i >= span.size:
            return math.nan
        sq.append((float(np.mean(v)) * span[i]) ** 2)
    return float(math.sqrt(np.mean(sq)))


def element_psnr(results, dataset: str) -> dict:
    """``{method: {t: {seed: {element: dB}}}}``: the acquisition cells' per-element PSNRs
    against the noise-free truth on ``dataset``."""
    acc: dict = {}
    for r in results.rows:
        if (r["dataset"] != dataset or r["protocol"] != PROTOCOL or r["truth"] != "clean"
                or r["metric"] != "psnr" or r["element"] == "all"):
            continue
        t = float(r.get("scan_time") or "nan")
        acc.setdefault(r["method"], {}).setdefault(t, {}).setdefault(r["seed"], {})[r["element"]] = r["value"]
    return acc


def map_curve(by_t: dict, element: str) -> tuple[list[float], list[float]]:
    """One map's curve from a method's ``{t: {seed: {element: dB}}}``: the times that scored
    it and its mean PSNR over the method seeds at each."""
    times = [t for t in sorted(by_t) if any(element in per for per in by_t[t].values())]
    return times, [float(np.mean([per[element] for per in by_t[t].values() if element in per]))
                   for t in times]


def maps_breaking_even(by_t: dict, reference: dict) -> tuple[int, int]:
    """How many element maps of a method's ``{t: {seed: {element: dB}}}`` (one entry of
    :func:`element_psnr`) reach the HR scan's PSNR of the same map (``reference``, the
    manifest's ``psnr_elements``) at some scan time measured, and of how many: ``(k, n)``."""
    scored = {e: c for e in reference if (c := map_curve(by_t, e))[0]}
    return sum(break_even(*c, reference[e]) is not None for e, c in scored.items()), len(scored)


#: the row and line of the HR step with a t× shorter dwell (no method)
SHORT_DWELL = "HR step, t× dwell (no method)"


def binned_dwell(entry: dict) -> bool:
    """Whether a dataset's manifest entry was made with ``--acquire dwell`` (the methods got the
    block means of a short-dwell HR-step scan)."""
    return entry.get("acquire") == "dwell"


def acquisition_text(entry: dict) -> str:
    """How a dataset's faster scans were made, from its manifest entry: the operator's name,
    ``, binned short dwell`` under ``--acquire dwell`` and the noise seed where it is not 0
    (runs of other noise draws are other LR scans: their own sections and columns)."""
    name = (entry.get("operator") or {}).get("name", "?")
    seed = entry.get("noise_seed") or 0
    return (name + (", binned short dwell" if binned_dwell(entry) else "")
            + (f", noise seed {seed}" if seed else ""))


def tradeoff_table(results, manifest: dict, markdown: bool = False) -> str:
    """Per dataset: PSNR against the noise-free truth per method and scan time, the HR
    scan's line, and the break-even scan time."""
    info = (manifest or {}).get(PROTOCOL, {})
    cs = curves(results, manifest)
    if not cs:
        return ""
    blocks = []
    for ds in dict.fromkeys(c.dataset for c in cs):
        ref = info.get(ds, {}).get("reference", {})
        ref_p = ref.get("psnr", math.nan)
        mine = [c for c in cs if c.dataset == ds]
        times = sorted({t for c in mine for t in c.times}, reverse=True)
        ref_r = ref.get("rmse_counts", math.nan)
        acc, ref_el = element_psnr(results, ds), ref.get("psnr_elements") or {}
        header = ["method", *[f"t={time_text(t)}" for t in times], "break-even t",
                  "in RMSE (counts)", "maps"]
        rows = []
        for c in mine:
            by = dict(zip(c.times, zip(c.psnr, c.psnr_std, c.n)))
            cells = []
            for t in times:
                if t not in by:
                    cells.append("—")
                    continue
                p, sd, n = by[t]
                cells.append(f"{p:.2f}" + (f" ± {sd:.2f}" if n > 1 else ""))
            k, n = maps_breaking_even(acc.get(c.method, {}), ref_el)
            rows.append([c.method, *cells, break_even_text(c.times, c.psnr, ref_p),
                         rmse_break_even_text(c.times, c.rmse_counts, ref_r),
                         f"{k} of {n}" if n else "—"])
        rows.append(["HR scan (reference)", *[f"{ref_p:.2f}"] * len(times), "1 (by definition)",
                     "1", "—"])
        dwell = info.get(ds, {}).get("short_dwell") or {}
        if dwell:
            rows.append([SHORT_DWELL, *[f"{dwell[repr(t)]['psnr']:.2f}" if repr(t) in dwell else "—"
                                        for t in times], "—", "—", "—"])
        op = info.get(ds, {}).get("operator", {})
        given = ("the block means of an HR-step scan of t× the dwell (the last row; `+F`: fused "
                 "with it)" if binned_dwell(info.get(ds, {}))
                 else "an LR scan of relative time t")
        caption = (f"Scan-time trade-off on {ds}: PSNR (dB, data range 1) against the noise-free "
                   f"truth of each method given {given} (operator "
                   f"{op.get('name', '?')}, scale {op.get('scale', '?')}); HR scan "
                   f"{ref_p:.2f} dB, RMSE {ref_r:.3g} counts; break-even: "
                   "smallest t reaching the HR scan (log-t interpolation), in PSNR (each element "
                   "map scaled to its range, so every map weighs the same) and in RMSE in counts "
                   "(the high-count maps weigh most), with the column's RMSE over the HR scan's at "
                   "the longest t where it never breaks even; maps: how many element maps reach "
                   "the HR scan's same map at some t (mean over seeds)"
                   + ("; last row: the other way to scan t× faster, the HR step with t× the "
                      "dwell, no method (synthesised with the scanner's noise and row jitter)"
                      if dwell else ""))
        blocks.append(_render(caption, header, rows, markdown))
    return "\n\n".join(blocks)


def _render(caption: str, header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = [caption, "", "| " + " | ".join(header) + " |",
                 "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(f"`{r[0]}`" if i == 0 and not r[0].startswith("HR") else c
                                    for i, c in enumerate(r)) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([caption, fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows)])


FIGURE_SOFTWARE = "maxrf-bench scan-time figure"


def tradeoff_figure(results, manifest: dict, dataset: str, labels: dict | None = None) -> bytes:
    """PNG: PSNR and RMSE (counts) against scan time, one line per method plus the HR scan
    and, where the manifest has it, the HR step with a shorter dwell; ``labels`` names a
    column in the legend otherwise than by its label (the page's preset aliases).  Its ``Software`` text chunk is :data:`FIGURE_SOFTWARE` (how a page recognises its figures)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    info = (manifest or {}).get(PROTOCOL, {}).get(dataset, {})
    ref = info.get("reference", {})
    cs = [c for c in curves(results, manifest) if c.dataset == dataset]
    # one t axis for both panels: a panel without data (no rmse metric) takes the other's limits
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100, sharex=True)
    colours = plt.cm.tab20(np.linspace(0, 1, max(len(cs), 2)))
    for c, colour in zip(cs, colours):
        style = "o--" if "+P" in c.method else "s:" if "+W" in c.method else "o-"
        name = (labels or {}).get(c.method, c.method)
        axes[0].plot(c.times, c.psnr, style, color=colour, label=name)
        axes[1].plot(c.times, c.rmse_counts, style, color=colour, label=name)
    dwell = info.get("short_dwell") or {}
    dwell_t = sorted(float(t) for t in dwell)
    for ax, key, what in ((axes[0], "psnr", "PSNR (dB) vs noise-free truth"),
                          (axes[1], "rmse_counts", "RMSE (counts) vs noise-free truth")):
        if key in ref:
            ax.axhline(ref[key], color="k", ls="--", lw=1.2, label="HR scan (t = 1)")
        if dwell_t:
            ax.plot(dwell_t, [dwell[repr(t)][key] for t in dwell_t], "x-.", color="0.45", lw=1.2,
                    label=SHORT_DWELL)
        ax.set_xscale("log", base=2)
        times = [t for c in cs for t in c.times]
        if times:  # explicit: a panel whose values are all NaN has no x data to scale by
            ax.set_xlim(min(times) / 1.25, max(times) * 1.25)
        ax.set_xlabel("scan time / HR scan time")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
    psnr = np.array([v for c in cs for v in c.psnr] + [ref.get("psnr", math.nan)], float)
    psnr = psnr[np.isfinite(psnr)]
    if dwell_t and psnr.size:  # the short-dwell line may leave the methods' range: keep theirs
        axes[0].set_ylim(psnr.min() - 1.0, psnr.max() + 0.5)
    rmse = np.array([v for c in cs for v in c.rmse_counts] + [ref.get("rmse_counts", math.nan)]
                    + [d["rmse_counts"] for d in dwell.values()], float)
    if (np.isfinite(rmse) & (rmse > 0)).any():
        axes[1].set_yscale("log")
    if not any(np.isfinite(v) for c in cs for v in c.rmse_counts):  # run without --metrics rmse
        axes[1].text(0.5, 0.8, "methods' RMSE not scored\n(--metrics without rmse)",
                     ha="center", va="center", transform=axes[1].transAxes, fontsize=8)
    # beside the panels, not over the curves (a grid has up to ~20 columns)
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"{dataset}: how much scan time a photograph buys", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": FIGURE_SOFTWARE})
    plt.close(fig)
    return buf.getvalue()


def report_section(results, manifest: dict, groups: str = "") -> tuple[str, dict[str, bytes], dict[str, str]]:
    """HTML of the trade-off section of the report, its PNGs and Markdown tables (``groups``:
    the per-group and per-map Markdown tables of :mod:`maxrf_bench.tradeoff`, shown after)."""
    import base64
    import html

    if not curves(results, manifest):
        return "", {}, {}
    binned = any(binned_dwell(e) for e in (manifest or {}).get(PROTOCOL, {}).values())
    given = ("the block means of an HR-step scan of t× the dwell synthesised from the noise-free "
             "expected counts with its own Poisson noise (<code>--acquire dwell</code>, ours; "
             "<code>+F</code> fuses the output with that scan)" if binned else
             "an LR scan synthesised from the noise-free expected counts with its own Poisson "
             "noise, counted for t·s² HR dwells per LR pixel")
    parts = ["<h2 id='acquisition'>Scan-time trade-off</h2>",
             f"<p class='note'>Each method super-resolves {given}; scored against the noise-free "
             "truth. The dashed line is the full HR scan's own distance to that truth.</p>"]
    pngs, mds = {}, {}
    for ds in dict.fromkeys(r["dataset"] for r in results.rows if r["protocol"] == PROTOCOL):
        png = tradeoff_figure(results, manifest, ds)
        name = f"scan-time-{ds}.png"
        pngs[name] = png
        parts.append(f"<figure><img alt='scan-time trade-off of {html.escape(ds)}' "
                     f"src='data:image/png;base64,{base64.b64encode(png).decode()}'></figure>")
    from .markup import markdown_html

    mds["scan-time.md"] = tradeoff_table(results, manifest, markdown=True) + (
        "\n\n" + groups if groups else "")
    parts.append(markdown_html(mds["scan-time.md"]))
    return "\n".join(parts), pngs, mds


def projection_table(results, markdown: bool = False) -> str:
    """Per dataset: what the host's projection (``+P``) and the noise-aware one (``+W``, ours)
    change against the same run's raw output, in dB, per scan time."""
    from .variants import parse_spec

    cs = curves(results, {})
    blocks = []
    for ds in dict.fromkeys(c.dataset for c in cs):
        groups: dict = {}
        for c in (c for c in cs if c.dataset == ds):
            spec = parse_spec(c.method)
            base = c.method.replace(f"+{spec.variant}", "", 1) if spec.variant else c.method
            groups.setdefault(base, {})[spec.variant] = c
        times = sorted({t for c in cs if c.dataset == ds for t in c.times}, reverse=True)
        rows = []
        for base, by_v in groups.items():
            raw = by_v.get("")
            if raw is None:
                continue
            for v in ("P", "W"):
                if v not in by_v:
                    continue
                d = dict(zip(by_v[v].times, by_v[v].psnr))
                r = dict(zip(raw.times, raw.psnr))
                rows.append([f"{base} → +{v}", *[f"{d[t] - r[t]:+.2f}" if t in d and t in r else "—"
                                                 for t in times]])
        if rows:
            caption = (f"Projection at short scan times on {ds}: PSNR change (dB, against the noise-free "
                       "truth) of the exact projection +P and of the noise-aware projection +W (ours) "
                       "over the same run's raw output")
            blocks.append(_render(caption, ["column", *[f"t={time_text(t)}" for t in times]], rows,
                                  markdown))
    return "\n\n".join(blocks)
