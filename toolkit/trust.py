"""Can a conservator trust the maps?  Two tables beside Table I.

* **Misregistration** (``run --misregister 0,1,2,4``, :mod:`maxrf_bench.misregister`): each
  column's PSNR at every RMS amplitude of the photograph's warp, and its *loss* against
  amplitude 0: ``PSNR(0) − PSNR(A)`` paired by seed (mean ± std over seeds), so a positive
  loss is what the misregistration costs.
* **Hidden layers**: the elements of a scan with a ``hidden_share`` (the share of each
  element's signal that comes from layers the photograph does not show; the simulator
  writes it, users may set it) are split at :data:`HIDDEN_THRESHOLD` into a
  *photo-visible* group (share < threshold) and a *hidden* group (share ≥ threshold).  Per
  column and group: the mean over the group's elements of the per-element PSNR (dB) and of
  the ``photo_leak`` metric (the share of the error's high-pass that the photograph's
  high-pass explains; see ``maxrf_bench_plugins.metrics.photo_leak``).  On a hidden
  element a leak well above the others' means photograph edges painted into a map whose
  signal the photograph does not show.  A second table gives, per element (its share, its
  group), every column's photo-leak and PSNR: whether that map may be trusted.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .results import Results, Summary

#: elements with ``hidden_share`` at or above this are the *hidden* group
HIDDEN_THRESHOLD = 0.3


def _fmt(s: Summary | None, digits: int = 2, signed: bool = False) -> str:
    if s is None or s.n == 0 or not math.isfinite(s.mean):
        return "—"
    text = f"{s.mean:+.{digits}f}" if signed else f"{s.mean:.{digits}f}"
    return text + (f" ± {s.std:.{digits}f}" if s.n > 1 else "")


def misregistration_table(results: Results, *, truth: str = "measured", protocol: str = "full",
                          metric: str = "psnr") -> list[str]:
    """Markdown lines: per dataset, a row per column, PSNR at each amplitude, then the loss
    against amplitude 0 at each amplitude > 0.  Empty without a sweep (or amplitude 0)."""
    amps = results.amplitudes
    summ = results.misregistration(metric, truth=truth, protocol=protocol)
    if not amps or not summ:
        return []
    # values per (dataset, label, amplitude) and seed, for the paired loss
    per_seed: dict[tuple[str, str, float], dict[int, float]] = {}
    t = results._truth_for(metric, truth)
    for r in results.all_rows:
        if (r["misregister"] != "" and r["metric"] == metric and r["element"] == "all"
                and r["truth"] == t and r["protocol"] == protocol):
            per_seed.setdefault((r["dataset"], r["method"], float(r["misregister"])), {})[r["seed"]] = r["value"]
    lines: list[str] = []
    datasets = list(dict.fromkeys(k[0] for k in summ))
    labels = list(dict.fromkeys(k[1] for k in summ))
    losses = [a for a in amps if a > 0] if 0.0 in amps else []
    head = ["method"] + [f"{a:g} px" for a in amps] + [f"loss at {a:g} px" for a in losses]
    for d in datasets:
        where = "" if protocol == "full" else f" ({protocol} protocol)"
        lines += [f"Misregistration — {d}{where}: {metric.upper()} (dB, against the {truth} truth) "
                  "at each RMS amplitude of the photograph's warp (HR pixels); "
                  + ("loss = PSNR at 0 px − PSNR at A, paired by seed" if losses else
                     "no loss column: the sweep has no amplitude 0 (add 0 to --misregister)"), "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for lab in labels:
            if not any((d, lab, a) in summ for a in amps):
                continue
            cells = [_fmt(summ.get((d, lab, a))) for a in amps]
            base = per_seed.get((d, lab, 0.0), {})
            for a in losses:
                other = per_seed.get((d, lab, a), {})
                diffs = [base[s] - other[s] for s in sorted(base) if s in other]
                cells.append(_fmt(Summary.of(diffs), signed=True) if diffs else "—")
            lines.append("| " + " | ".join([lab, *cells]) + " |")
        lines.append("")
    return lines


def hidden_shares(manifest: dict) -> dict[str, dict[str, float]]:
    """``{dataset: {element: hidden_share}}`` from a run's manifest (datasets that have it)."""
    out: dict[str, dict[str, float]] = {}
    for info in (manifest.get("inputs") or {}).values():
        hs = info.get("hidden_share")
        if hs:
            out[info["dataset"]] = {str(k): float(v) for k, v in hs.items()}
    return out


def _group_mean(results: Results, d: str, lab: str, metric: str, elements: list[str],
                truth: str, protocol: str) -> Summary | None:
    """Mean over ``elements`` of the per-element metric, per seed; then mean ± std over seeds."""
    t = results._truth_for(metric, truth)
    by_seed: dict[int, list[float]] = {}
    for r in results.rows:
        if (r["dataset"] == d and r["method"] == lab and r["metric"] == metric
                and r["element"] in elements and r["truth"] == t and r["protocol"] == protocol
                and math.isfinite(r["value"])):
            by_seed.setdefault(r["seed"], []).append(r["value"])
    vals = [float(np.mean(v)) for v in by_seed.values() if len(v) == len(elements)]
    return Summary.of(vals) if vals else None


def hidden_table(results: Results, shares: dict[str, dict[str, float]], *,
                 truth: str = "measured", protocol: str = "full",
                 threshold: float = HIDDEN_THRESHOLD) -> list[str]:
    """Markdown lines: per dataset with ``hidden_share``, a row per column: PSNR and
    photo-leak of the photo-visible and of the hidden group (unwarped photograph)."""
    lines: list[str] = []
    for d, share in shares.items():
        if not any(r["dataset"] == d and r["protocol"] == protocol for r in results.rows):
            continue
        hidden = [e for e, v in share.items() if v >= threshold]
        visible = [e for e, v in share.items() if v < threshold]
        where = "" if protocol == "full" else f" ({protocol} protocol)"
        lines += [f"Hidden layers — {d}{where}: mean over each group's elements of the per-element "
                  f"PSNR (dB, {truth} truth) and photo-leak (0 = nothing of the photograph copied "
                  f"into the error); hidden = hidden_share ≥ {threshold:g}", "",
                  "hidden: " + (", ".join(f"{e} ({share[e]:.2f})" for e in hidden) or "(none)"),
                  "", "visible: " + (", ".join(f"{e} ({share[e]:.2f})" for e in visible) or "(none)"), "",
                  "| method | PSNR visible | PSNR hidden | photo-leak visible | photo-leak hidden |",
                  "|---|---|---|---|---|"]
        for lab in results.methods:
            cells = [_fmt(_group_mean(results, d, lab, m, g, truth, protocol) if g else None,
                          2 if m == "psnr" else 3)
                     for m in ("psnr", "photo_leak") for g in (visible, hidden)]
            if all(c == "—" for c in cells):
                continue
            lines.append("| " + " | ".join([lab, *cells]) + " |")
        lines.append("")
        # per element: is this map to be trusted?  photo-leak (PSNR) of every column
        labels = [lab for lab in results.methods
                  if any(r["dataset"] == d and r["method"] == lab and r["metric"] == "photo_leak"
                         and r["protocol"] == protocol for r in results.rows)]
        if labels:
            lines += [f"Per element — {d}{where}: photo-leak (PSNR dB) of each column", "",
                      "| element | hidden_share | group | " + " | ".join(labels) + " |",
                      "|---|---|---|" + "---|" * len(labels)]
            for e, v in sorted(share.items(), key=lambda kv: -kv[1]):
                cells = []
                for lab in labels:
                    leak = _group_mean(results, d, lab, "photo_leak", [e], truth, protocol)
                    ps = _group_mean(results, d, lab, "psnr", [e], truth, protocol)
                    cells.append(f"{_fmt(leak, 3)} ({_fmt(ps)})")
                lines.append(f"| {e} | {v:.2f} | {'hidden' if v >= threshold else 'visible'} | "
                             + " | ".join(cells) + " |")
            lines.append("")
    return lines


def trust_markdown(results: Results, manifest: dict, *, truth: str = "measured") -> str:
    """Both tables for the full and reduced protocols of the run; empty string when neither
    applies.  The acquisition and thinning protocols are left out: their rows differ by scan
    time and truth, which these tables do not separate (their misregistered rows are still in
    ``results.csv``)."""
    from .results import TABLE_PROTOCOLS

    lines: list[str] = []
    protocols = [p for p in dict.fromkeys(r["protocol"] for r in results.all_rows)
                 if p in TABLE_PROTOCOLS]
    shares = hidden_shares(manifest)
    for p in protocols:
        lines += misregistration_table(results, truth=truth, protocol=p)
        lines += hidden_table(results, shares, truth=truth, protocol=p)
    return "\n".join(lines).rstrip()


def run_trust_markdown(run_dir: str | Path, *, truth: str = "measured") -> str:
    """:func:`trust_markdown` of a run directory."""
    from .results import read_results
    from .rundir import read_manifest

    return trust_markdown(read_results(run_dir), read_manifest(run_dir), truth=truth)
