"""The tables and the page of the scan-time and thinning protocols (presentation only).

Reads run directories; :mod:`maxrf_bench.acquisition` and :mod:`maxrf_bench.thinning` hold
the protocols themselves (and import nothing from here, so the preparation of a run does not
import the results reader).
"""
from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import numpy as np

from .acquisition import (FIGURE_SOFTWARE, PROTOCOL, _render, acquisition_text, binned_dwell,
                          break_even, break_even_text, curves, element_psnr, map_curve,
                          maps_breaking_even, projection_table,
                          rmse_break_even_text, split_protocol, time_text, tradeoff_figure,
                          tradeoff_table)
from .errors import ConfigError
from .results import Results, read_results
from .thinning import PROTOCOL as THINNING


def protocol_tables(results, manifest: dict, markdown: bool = False) -> str:
    """The tables and notes ``run``/``table`` print besides Table I (from the run's results and
    its manifest): the scan-time trade-off, Poisson thinning, scans cropped to the scale and
    estimated noise ceilings."""
    blocks = [tradeoff_table(results, manifest, markdown), group_table(results, manifest, markdown),
              projection_table(results, markdown), thinning_table(results, markdown)]
    notes = [f"note: estimated noise ceiling of {k}: {c['psnr']:.2f} dB against its measured maps "
              f"({c['estimator']})" for k, c in (manifest.get("noise_ceiling_estimated") or {}).items()]
    blocks.append("\n".join(notes))
    return "\n\n".join(b for b in blocks if b)


def _named(args, run_dirs) -> list[str]:
    """``args`` with each run directory written as its folder name: the page goes into a
    repository, the runs stay on the machine that made them."""
    dirs = {Path(d).resolve() for d in run_dirs}
    return [Path(a).name if Path(str(a)).resolve() in dirs else str(a) for a in args]


def _lr_scans(manifest: dict) -> str:
    """What makes two acquisition runs score the same LR scans: per scan, the operator, the
    noise seed and the HR reference."""
    info = manifest.get(PROTOCOL, {})
    return json.dumps({ds: [e.get("operator"), e.get("noise_seed"), (e.get("reference") or {}).get("psnr")]
                            + ([e["acquire"]] if e.get("acquire", "coarse") != "coarse" else [])
                       for ds, e in sorted(info.items())}, sort_keys=True, default=str)


def _cell(column: str, scan_time, seed) -> tuple[str, str, str]:
    """A (column, scan time, method seed) cell of a section, the time as ``repr(float)``
    (``""``: none)."""
    return column, repr(float(scan_time)) if scan_time not in (None, "") else "", str(seed)


def fill_short_dwell(run_dir, manifest: dict) -> None:
    """Give ``manifest`` (of ``run_dir``, read, not written back) the short-dwell scores of
    each acquisition dataset that a run made before the protocol recorded them lacks, from the
    inputs the run saved (:func:`maxrf_bench.acquisition.short_dwell_reference`; the scan's
    recorded gain excess and row jitter, the run's noise seed)."""
    from fractions import Fraction

    from .acquisition import protocol_key, short_dwell_reference
    from .rundir import load_prepared

    for ds, info in manifest.get(PROTOCOL, {}).items():
        if info.get("short_dwell"):
            continue
        scores = {}
        for t in info.get("scan_times", []):
            key = f"{ds}@{protocol_key(Fraction(t).limit_denominator(1 << 20))}"
            try:
                prep = load_prepared(run_dir, key)
            except OSError:  # the run's inputs are not there: its tables go without
                return
            if prep.truth_clean is None:
                return
            scores[repr(float(t))] = short_dwell_reference(prep, float(t), info.get("noise_seed"))
        info["short_dwell"] = scores


def merged_runs(run_dirs) -> list[tuple[list[tuple[str, dict]], Results, dict]]:
    """The run directories as page sections, ``(runs, results, manifest)``: runs of the same
    LR scans (:func:`_lr_scans`) form one section whose results are the first run's rows plus
    each later run's rows of the (column, scan time, method seed) cells no earlier run has
    (the first run that has a column at a time and seed wins; a later run of other seeds adds
    them), and whose manifest is the first run's with the timings of every cell shown."""
    from .rundir import read_manifest

    sections: dict[str, tuple[list, list, dict, set]] = {}
    for run_dir in run_dirs:
        results = read_results(run_dir)
        manifest = read_manifest(run_dir)
        if not curves(results, manifest):
            raise ConfigError(f"{run_dir} has no acquisition-protocol results: expected a run of "
                              "`maxrf-bench run --protocol acquisition`")
        key = _lr_scans(manifest)
        cells = {_cell(r["method"], r.get("scan_time"), r.get("seed")) for r in results.all_rows}
        if key not in sections:
            fill_short_dwell(run_dir, manifest)
            sections[key] = ([(str(run_dir), manifest)], list(results.all_rows),
                             {**manifest, "timings": list(manifest.get("timings", []))}, cells)
            continue
        runs, rows, merged, seen = sections[key]
        runs.append((str(run_dir), manifest))
        new = cells - seen
        rows += [r for r in results.all_rows if _cell(r["method"], r.get("scan_time"), r.get("seed")) in new]
        merged["timings"] += [t for t in manifest.get("timings", [])
                              if {_cell(c, split_protocol(t.get("protocol", ""))[1], t.get("seed"))
                                  for c in t.get("columns") or [t["method"]]} & new]
        seen |= new
    return [(runs, Results(rows), merged) for runs, rows, merged, _ in sections.values()]


PAGE_TITLE = "# How much scan time a photograph buys"


def _seed_curves(results, dataset: str, method: str) -> dict:
    """``{seed: (times, whole-cube PSNRs)}`` of one column on one acquisition dataset."""
    by: dict = {}
    for r in results.rows:
        if (r["dataset"] == dataset and r["method"] == method and r["protocol"] == PROTOCOL
                and r["truth"] == "clean" and r["metric"] == "psnr" and r["element"] == "all"):
            by.setdefault(r["seed"], {})[float(r["scan_time"])] = r["value"]
    return {seed: (sorted(d), [d[t] for t in sorted(d)]) for seed, d in sorted(by.items())}


def column_aliases(sections) -> dict[str, str]:
    """``{label: alias}`` for the columns of ``sections`` that one of their method's presets
    writes in fewer parameters (:func:`maxrf_bench.variants.preset_alias`), where that method
    is installed here."""
    from .errors import UnknownNameError
    from .plugins import get_registry
    from .variants import preset_alias

    out: dict[str, str] = {}
    for _, _, manifest in sections:
        preset = (manifest.get("options") or {}).get("preset")
        for label, col in (manifest.get("columns") or {}).items():
            if label in out or not isinstance(col, dict) or "params" not in col:
                continue
            try:
                method = get_registry().get("methods", col.get("method", ""))
            except UnknownNameError:  # not installed here: the label alone
                continue
            alias = preset_alias(method, col.get("variant", ""), col["params"], preset)
            if alias:
                out[label] = alias
    return out


def breakeven_summary(sections) -> str:
    """The page's first table: per column (rows) and per scan and operator (columns) the
    whole cube's break-even scan time (mean over method seeds), with the range over the
    seeds where there are several, and the photo-visible and hidden groups' break-even."""
    heads, cells = [], {}
    for _, results, manifest in sections:
        info = manifest.get(PROTOCOL, {})
        groups = group_curves(results, manifest)
        accs = {ds: element_psnr(results, ds) for ds in info}
        for c in curves(results, manifest):
            head = f"{c.dataset}, `{acquisition_text(info.get(c.dataset, {}))}`"
            if head not in heads:
                heads.append(head)
            reference = info.get(c.dataset, {}).get("reference", {})
            ref = reference.get("psnr", math.nan)
            text = f"**{break_even_text(c.times, c.psnr, ref, decimal=False)}**"
            per_seed = _seed_curves(results, c.dataset, c.method)
            if len(per_seed) > 1:
                ts = [break_even(*tp, ref) for tp in per_seed.values()]
                reached = sorted(t for t in ts if t is not None)
                text += (f" (seeds {time_text(reached[0])}–{time_text(reached[-1])})"
                         if len(reached) == len(ts) else f" (never at {len(ts) - len(reached)} of {len(ts)} seeds)")
            g = groups.get(c.dataset)
            if g:
                text += "; " + ", ".join(f"{grp} {break_even_text(*g['curves'][(c.method, grp)], g['reference'][grp], decimal=False)}"
                                         for grp in g["reference"] if (c.method, grp) in g["curves"])
            in_counts = rmse_break_even_text(c.times, c.rmse_counts,
                                             reference.get("rmse_counts", math.nan))
            if in_counts != "—":
                text += f"; in counts {in_counts}"
            k, n = maps_breaking_even(accs.get(c.dataset, {}).get(c.method, {}),
                                      reference.get("psnr_elements") or {})
            if n:
                text += f"; {k} of {n} maps"
            cells.setdefault(c.method, {})[head] = text
    if not cells:
        return ""
    aliases = column_aliases(sections)
    rows = [[aliases.get(col, col), *[by.get(h, "—") for h in heads]] for col, by in cells.items()]
    caption = ("Break-even scan time at a glance: the smallest relative scan time at which each "
               "column's maps are as close to the noise-free truth as the full HR scan's, for the "
               "whole cube (bold; mean PSNR over the method seeds, with the range of the single "
               "seeds' break-evens where a column has several), for the photo-visible and the "
               "hidden element groups, and for the whole cube in RMSE in counts, where the "
               "high-count maps weigh most (with the column's RMSE over the HR scan's at the "
               "longest scan time where it never breaks even), and how many of the scan's "
               "element maps reach the HR scan's same map at some scan time measured (`k of n "
               "maps`); `never`: not reached at any scan "
               "time measured, `≤ t`: already reached at the shortest one. The sections below "
               "give every PSNR")
    table = _render(caption, ["column", *heads], rows, markdown=True)
    if aliases:
        table += ("\n\nColumns written with a method preset above are labelled below by the "
                  "parameters that differ from the run's preset: "
                  + "; ".join(f"`{a}` = `{lab}`" for lab, a in aliases.items() if lab in cells) + ".")
    return table


def write_tradeoff_page(run_dirs, out) -> Path:
    """``docs/scan-time.md``: per section (run directories of the same LR scans merged,
    :func:`merged_runs`) each run's command, the break-even, per-group and projection tables,
    the figure (PNG beside the page) and the per-cell times."""
    from .atomic import check_output

    out = Path(out)
    # the ownership rule: a page of ours is replaced, a file of the user's never
    check_output(out, kind="scan-time page", is_file=True, inputs=run_dirs,
                 owned=lambda p: _our_page(p) is not None)
    fig_dir = out.parent / "figures"
    lines = [PAGE_TITLE, "",
             f"Generated by `maxrf-bench tradeoff-page {' '.join(_named(run_dirs, run_dirs))} -o {out}` "
             "from the run directories of `maxrf-bench run --protocol acquisition` (see "
             "`maxrf_bench.acquisition` for the protocol: an LR scan of relative time t is "
             "synthesised from the noise-free expected counts with its own Poisson noise, each LR "
             "pixel counted for t·s² HR dwells through the run's operator; every method is scored "
             "against the noise-free truth; the reference line is the HR scan's own PSNR against "
             "it). Break-even: the smallest t at which a method is as close to the noise-free truth "
             "as the full HR scan (log-t interpolation; `never`: not within the times measured). "
             "The per-group tables split the photo-visible from the hidden elements (the scan's "
             "`hidden_share`); the per-map tables give each element map's own break-even and set "
             "the coarse scan against the other way to scan faster, the HR step with a shorter "
             "dwell; what limits `ctx` at short scan times: [noise.md](noise.md).", ""]
    sections = merged_runs(run_dirs)
    if any(binned_dwell(e) for _, _, m in sections for e in m.get(PROTOCOL, {}).values()):
        lines += ["Sections marked `binned short dwell` were run with `--acquire dwell` (ours): their "
                  "methods got the block means of an HR-step scan of t× the dwell (the row `HR step, "
                  "t× dwell`) instead of a coarse scan, and `+F` columns fuse a method's output with "
                  "that scan by its counting noise.", ""]
    aliases = column_aliases(sections)  # the figures' legends name columns as the summary does
    lines += [breakeven_summary(sections), ""]
    pngs = {}
    for runs, results, manifest in sections:
        entries = manifest.get(PROTOCOL, {})
        first = next(iter(entries.values()), {})
        op = ((first.get("operator") or {}).get("name", "?") + ("-dwell" if binned_dwell(first) else "")
              + (f"-noise{first['noise_seed']}" if first.get("noise_seed") else ""))
        lines += [f"## {', '.join(entries)} — operator `{acquisition_text(first)}`", ""]
        for _, m in runs:
            lines += ["```bash", shlex.join(_named(m.get("command", []), run_dirs)), "```", "",
                      f"Started {m.get('started')}, "
                      f"{'finished ' + str(m['finished']) if m.get('finished') else 'not finished (the cells done so far)'}; host "
                      f"{m.get('host', {}).get('platform', '?')}, {m.get('host', {}).get('cpus', '?')} "
                      f"CPUs; code {m.get('git_commit')}.", ""]
        if len(runs) > 1:
            lines += [f"The {len(runs)} runs above score the same LR scans (same scan, operator "
                      "and noise seed); their columns are shown together, each column at each "
                      "scan time from the first run that has it.", ""]
        lines += [tradeoff_table(results, manifest, markdown=True), "",
                  group_table(results, manifest, markdown=True), "",
                  element_table(results, manifest, markdown=True), "",
                  dwell_table(results, manifest, markdown=True), "",
                  projection_table(results, markdown=True), ""]
        for ds in manifest.get(PROTOCOL, {}):
            name = f"{out.stem}-{ds}-{op}.png"  # the page's own: two pages never share a figure
            pngs[name] = tradeoff_figure(results, manifest, ds, aliases)
            lines += [f"![PSNR and RMSE against scan time, {ds}, {op}](figures/{name})", ""]
        times = manifest.get("timings", [])
        if times:
            lines += [f"Per-cell wall time (s, {'this run' if len(runs) == 1 else 'these runs'}; a "
                      "reused cell keeps the time of the run that computed it): "
                      + "; ".join(f"{t['protocol'].split('-', 1)[-1].replace('_', '/')} "
                                  f"{t['method']} {t['seconds']:.0f}" for t in times), ""]
    from .atomic import atomic_path, atomic_write_text

    # the ownership rule for the figures too, all checked before anything is written
    for name in pngs:
        check_output(fig_dir / name, kind="scan-time figure", is_file=True, inputs=run_dirs,
                     owned=lambda p, name=name: _our_figure(p, out, name))
    for name, png in pngs.items():
        with atomic_path(fig_dir / name) as tmp:
            tmp.write_bytes(png)
    atomic_write_text(out, "\n".join(lines).rstrip() + "\n")
    return out


def _our_page(path: Path) -> str | None:
    """The text of ``path`` when it is a scan-time page this tool wrote, else ``None``."""
    if not path.is_file():
        return None
    text = path.read_text(errors="replace")
    return text if text.startswith(PAGE_TITLE) else None


def _our_figure(path: Path, page: Path, name: str) -> bool:
    """Whether ``path`` is a figure a scan-time page may replace: one this tool wrote (its
    ``Software`` chunk), or one the page it sits beside names (pages written before the
    chunk existed)."""
    from PIL import Image

    if not path.is_file():
        return False
    try:
        with Image.open(path) as im:
            if im.format == "PNG" and im.info.get("Software") == FIGURE_SOFTWARE:
                return True
    except (OSError, ValueError):
        return False
    text = _our_page(page)
    return text is not None and f"](figures/{name})" in text


# --- per group: photo-visible and hidden elements -------------------------------------

def group_psnr(per_element: dict[str, float], elements: list[str]) -> float:
    """PSNR (dB) of a group of elements from their per-element PSNRs: ``−10·log10`` of the
    mean of their MSEs (the group's maps pooled, as the whole-cube PSNR pools all elements)."""
    mses = [10 ** (-per_element[e] / 10) for e in elements]
    m = float(np.mean(mses))
    return -10 * math.log10(m) if m > 0 else math.inf


def _spans(entry: dict) -> dict[str, float]:
    """``{element: span in counts}`` of a dataset's acquisition manifest entry."""
    return dict(zip(entry.get("elements", []), entry.get("span", [])))


def group_rmse_counts(per_element: dict[str, float], elements: list[str],
                      span: dict[str, float]) -> float:
    """RMSE in counts of a group of elements from their per-element PSNRs (data range 1, on
    maps scaled by each element's ``span``): the root of the mean of ``10^(−PSNR/10)·span²``,
    so the high-count maps weigh most, as in the whole cube's RMSE in counts.  NaN where an
    element has no span."""
    if not all(e in span for e in elements):
        return math.nan
    return float(math.sqrt(np.mean([10 ** (-per_element[e] / 10) * span[e] ** 2
                                    for e in elements])))


def element_table(results, manifest: dict, markdown: bool = False) -> str:
    """Per acquisition dataset: each column's break-even scan time per element map (mean PSNR
    over method seeds against the HR scan's same map).  For one map the break-even is the
    same in PSNR and in RMSE in counts, so this is the table without a weighting: what a
    conservator reads to decide which elements a faster scan still maps as well as the full
    one.  Elements are ordered by their span in counts, strongest first; hidden ones (the
    scan's ``hidden_share`` ≥ the threshold) are marked."""
    from .trust import HIDDEN_THRESHOLD, hidden_shares

    info = (manifest or {}).get(PROTOCOL, {})
    shares = hidden_shares(manifest or {})
    blocks = []
    for ds, d in info.items():
        ref = (d.get("reference") or {}).get("psnr_elements")
        acc = element_psnr(results, ds)
        if not ref or not acc:
            continue
        span = _spans(d)
        order = sorted(ref, key=lambda e: -span.get(e, 0.0))
        share = shares.get(ds, {})
        header = ["method", *[f"{e}{' (hidden)' if share.get(e, 0.0) >= HIDDEN_THRESHOLD else ''}"
                              + (f", {span[e]:.3g}" if e in span else "") for e in order]]
        rows = []
        for method, by_t in acc.items():
            cells = []
            for e in order:
                times, ps = map_curve(by_t, e)
                text = break_even_text(times, ps, ref[e], decimal=False) if times else "—"
                if text == "never":  # how far short, at the longest time measured
                    text += f" ({ps[-1] - ref[e]:+.1f} dB at t={time_text(times[-1])})"
                cells.append(text)
            rows.append([method, *cells])
        rows.append(["HR scan (PSNR, dB)", *[f"{ref[e]:.2f}" for e in order]])
        caption = (f"Per element map on {ds}: each column's break-even scan time against the HR "
                   "scan's same map (mean PSNR over method seeds; for one map the same in RMSE in "
                   "counts; `never (-d dB at t=T)`: the map's PSNR minus the HR scan's at the longest "
                   "time); maps ordered by their span in counts (the number after the name), "
                   "strongest first; `(hidden)`: a map the photograph does not show "
                   f"(hidden_share ≥ {HIDDEN_THRESHOLD:g}); last row: the HR scan's own PSNR per map")
        blocks.append(_render(caption, header, rows, markdown))
    return "\n\n".join(blocks)


def dwell_table(results, manifest: dict, markdown: bool = False) -> str:
    """Per acquisition dataset whose manifest has the short-dwell scans: per element map and
    scan time t, the PSNR of the HR step with t× the dwell (no method) against that of the
    best column at t for that map (mean over its method seeds; the maximum over columns, so
    generous to the coarse scan), and which way of scanning t× faster wins."""
    info = (manifest or {}).get(PROTOCOL, {})
    blocks = []
    for ds, d in info.items():
        dwell = d.get("short_dwell") or {}
        acc = element_psnr(results, ds)
        if not dwell or not acc:
            continue
        times = sorted((float(t) for t in dwell), reverse=True)
        span = _spans(d)
        ref = (d.get("reference") or {}).get("psnr_elements", {})
        order = sorted(dwell[repr(times[0])]["psnr_elements"], key=lambda e: -span.get(e, 0.0))
        binned = binned_dwell(d)  # the columns got the short-dwell scan, binned
        other = "binned" if binned else "coarse"
        rows = []
        for e in order:
            curves_ = [dict(zip(*map_curve(by_t, e))) for by_t in acc.values()]
            cells = []
            for t in times:
                best = max((c[t] for c in curves_ if t in c), default=None)
                short = dwell[repr(t)]["psnr_elements"][e]
                cells.append("—" if best is None else
                             f"{short:.1f} / {best:.1f} ({'dwell' if short > best else other})")
            rows.append([e, f"{span[e]:.3g}" if e in span else "—",
                         f"{ref[e]:.1f}" if e in ref else "—", *cells])
        caption = (f"A coarser step or a shorter dwell on {ds}: per element map and scan time t, the "
                   "PSNR (dB) of the HR step with t× the dwell and no method (synthesised with the "
                   "scanner's noise and row jitter) / of the best column at t for that map ("
                   + ("that scan's block means with a method and the photograph, `+F`: fused with "
                      "the scan; `binned`: the column wins" if binned else
                      "the coarse scan with a method and the photograph")
                   + "), and which wins; maps by span in counts, strongest first")
        blocks.append(_render(caption, ["map", "span (counts)", "HR scan",
                                        *[f"t={time_text(t)}" for t in times]], rows, markdown))
    return "\n\n".join(blocks)


def group_curves(results, manifest: dict, threshold: float | None = None) -> dict:
    """``{dataset: {"groups": {group: [elements]}, "reference": {group: dB},
    "reference_counts": {group: counts}, "curves": {(method, group): (times, psnrs)},
    "counts": {(method, group): rmses}}}`` for the acquisition datasets whose scan records
    ``hidden_share``: the photo-visible group (share < ``threshold``, default
    :data:`maxrf_bench.trust.HIDDEN_THRESHOLD`) and the hidden one, PSNR against the
    noise-free truth per scan time (mean over method seeds of the group PSNR) and the
    group's RMSE in counts at the same times (mean over method seeds; NaN without the
    dataset's spans)."""
    from .trust import HIDDEN_THRESHOLD, hidden_shares

    threshold = HIDDEN_THRESHOLD if threshold is None else threshold
    info = (manifest or {}).get(PROTOCOL, {})
    shares = hidden_shares(manifest or {})
    out: dict = {}
    for ds, share in shares.items():
        ref_el = info.get(ds, {}).get("reference", {}).get("psnr_elements")
        if not ref_el:
            continue
        span = _spans(info.get(ds, {}))
        groups = {"visible": [e for e, v in share.items() if v < threshold],
                  "hidden": [e for e, v in share.items() if v >= threshold]}
        groups = {g: els for g, els in groups.items() if els and all(e in ref_el for e in els)}
        acc = element_psnr(results, ds)
        cs: dict = {}
        counts: dict = {}
        for method, by_t in acc.items():
            for g, els in groups.items():
                times, ps, rc = [], [], []
                for t in sorted(by_t):
                    seeds = [per for per in by_t[t].values() if all(e in per for e in els)]
                    if seeds:
                        times.append(t)
                        ps.append(float(np.mean([group_psnr(per, els) for per in seeds])))
                        rc.append(float(np.mean([group_rmse_counts(per, els, span) for per in seeds])))
                if times:
                    cs[(method, g)] = (times, ps)
                    counts[(method, g)] = rc
        if cs:
            out[ds] = {"groups": groups, "threshold": threshold, "curves": cs, "counts": counts,
                       "reference": {g: group_psnr(ref_el, els) for g, els in groups.items()},
                       "reference_counts": {g: group_rmse_counts(ref_el, els, span)
                                            for g, els in groups.items()}}
    return out


def group_table(results, manifest: dict, markdown: bool = False) -> str:
    """Per dataset with ``hidden_share``: the trade-off of the photo-visible and of the hidden
    elements apart — per method and group the PSNR against the noise-free truth per scan
    time and the group's own break-even against the HR scan's same group, in PSNR and in
    RMSE in counts.  A conservator decides per element: the photograph may buy scan time on
    the elements it shows and none on those it hides."""
    blocks = []
    for ds, g in group_curves(results, manifest).items():
        times = sorted({t for ts, _ in g["curves"].values() for t in ts}, reverse=True)
        header = ["method", "group", *[f"t={time_text(t)}" for t in times], "break-even t",
                  "in RMSE (counts)"]
        rows = []
        for (method, group), (ts, ps) in g["curves"].items():
            by = dict(zip(ts, ps))
            rows.append([method, group, *[f"{by[t]:.2f}" if t in by else "—" for t in times],
                         break_even_text(ts, ps, g["reference"][group]),
                         rmse_break_even_text(ts, g["counts"][(method, group)],
                                              g["reference_counts"][group])])
        for group, ref in g["reference"].items():
            rows.append(["HR scan (reference)", group, *[f"{ref:.2f}"] * len(times),
                         "1 (by definition)", f"1 ({g['reference_counts'][group]:.3g} counts)"])
        desc = "; ".join(f"{group}: {', '.join(els)}" for group, els in g["groups"].items())
        caption = (f"Per element group on {ds}: PSNR (dB, against the noise-free truth; the group's "
                   f"maps pooled) of the photo-visible (hidden_share < {g['threshold']:g}) and the "
                   f"hidden elements, and each group's break-even against the HR scan's same group, "
                   f"in PSNR and in RMSE in counts (the group's high-count maps weigh most; "
                   f"`never (k× at t=T)`: the group's RMSE over the HR scan's) ({desc})")
        blocks.append(_render(caption, header, rows, markdown))
    return "\n\n".join(blocks)


# --- thinning ------------------------------------------------------------------------

def thinning_table(results, markdown: bool = False) -> str:
    """Per dataset and method: estimated clean-truth PSNR with its 95 % interval, the PSNR
    against the other half, and the true clean-truth PSNR where the scan has one."""
    rows_by: dict = {}
    for r in results.rows:
        if r["protocol"] != THINNING or r["element"] != "all":
            continue
        key = (r["dataset"], r["method"])
        rows_by.setdefault(key, {}).setdefault((r["truth"], r["metric"]), []).append(r["value"])
    if not rows_by:
        return ""
    blocks = []
    for ds in dict.fromkeys(k[0] for k in rows_by):
        header = ["method", "estimated clean PSNR", "95 % interval", "vs other half", "clean PSNR (true)"]
        rows = []
        for (d, method), cell in rows_by.items():
            if d != ds:
                continue
            f = lambda k: float(np.mean(cell[k])) if k in cell else math.nan  # noqa: E731
            rows.append([method, f"{f(('estimated', 'psnr')):.2f}",
                         f"[{f(('estimated', 'psnr_low')):.2f}, {f(('estimated', 'psnr_high')):.2f}]",
                         f"{f(('measured', 'psnr')):.2f}",
                         f"{f(('clean', 'psnr')):.2f}" if ("clean", "psnr") in cell else "—"])
        caption = (f"Poisson thinning on {ds}: each method gets the LR scan of one binomial half of "
                   "the counts (a half-time scan) and is scored against the other half; subtracting "
                   "that half's Poisson variance estimates the PSNR (dB) against the noise-free map "
                   "(mean over seeds; interval: 95 %, per cell)")
        blocks.append(_render(caption, header, rows, markdown))
    return "\n\n".join(blocks)


