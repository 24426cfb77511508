"""One self-contained HTML report of a run: the paper's Table I and Fig. 2 for this run.

``maxrf-bench report DIR -o REPORT.html`` (and every ``maxrf-bench run``, at its end) writes
one HTML page that needs nothing else: figures are PNG embedded as ``data:`` URIs, the
style sheet is inline, there is no JavaScript and no external request, so the page can be
mailed, moved or opened offline.  Beside it, in ``REPORT_files/``, the same figures as PNG
files and the tables as Markdown, for papers and lab reports.

The page holds, in order:

* **Table I** for each protocol and truth of the run (full resolution against the measured
  truth; against the simulator's clean truth where the scans have one, with each
  dataset's noise ceiling; Wald's reduced-resolution protocol where it ran): datasets ×
  metrics rows, one column per method label; RMSE and PSNR as in the paper, the other
  metrics behind a toggle (a CSS check box).  Best in bold, second underlined, by
  :func:`maxrf_bench.table.rank` (a best is marked only beyond the spread of the seeds;
  otherwise the tied columns are all marked); ``mean ± std`` when the run has several
  seeds.  Per-element tables behind a toggle.
* **Fig. 2** for each dataset: the truth of one element, the photograph, every method's
  map, and below each map its error (map − truth).  Maps share one colour scale (viridis,
  counts), error maps another (the diverging RdBu, symmetric about 0), each with a colour
  bar; each panel names the method and its PSNR on that element.  With several seeds, the
  standard deviation over seeds of each method's map (cividis).  Scans without truth show
  the LR input, the photograph and each method's map.  The element is ``element=`` or the
  one whose truth has the most structure (:func:`structure_score`); ``crop="y0:y1,x0:x1"``
  zooms in.
* **Ablations** (Tables II and III) when ``maxrf-bench ablate`` wrote an ``ablation.csv``
  in the run directory or a folder inside it, beside the paper's values; every row also
  gives its PSNR difference to the table's first row (the full model) paired by seed, and
  the paper's difference beside it.
* **The manifest**: command, versions (plugins too), seeds, presets, parameters, timings,
  machine; the whole JSON behind a toggle.

Every string that comes from a scan, a plugin or the manifest is HTML-escaped.  Colour
maps are perceptually uniform and colour-blind safe (viridis, cividis; RdBu for signed
errors, a ColorBrewer scheme marked colour-blind safe).
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write_text
from .config import dataset_key
from .errors import ConfigError, MaxrfError, StoreError
from .table import (MAIN_METRICS, TRUTH_TEXT, format_cell, metric_title, rank, rank_summaries,
                    tables1)

MAP_CMAP, STD_CMAP, ERR_CMAP = "viridis", "cividis", "RdBu_r"
MAX_COLUMNS = 6  # figure panels per row before wrapping

#: The paper's Tables II and III (Flowers and Insects, 4×), by the configuration labels
#: of ``maxrf_bench_plugins.proposed.ablation``: (PSNR dB, RMSE).
PAPER_ABLATION = {
    ("II", "Lc1+Lc2+Ladv"): (37.31, 0.0136),
    ("II", "Lc1+Ladv"): (37.31, 0.0136),
    ("II", "Lc1"): (36.97, 0.0142),
    ("II", "Lc1+Lc2"): (36.97, 0.0142),
    ("II", "Lc2+Ladv"): (31.85, 0.0256),
    ("III", "Full Model"): (37.31, 0.0136),
    ("III", "Standard LSGAN Loss"): (36.98, 0.0142),
    ("III", "Linear Synthesis Layer"): (36.75, 0.0145),
    ("III", "No Projection Module"): (36.34, 0.0152),
    ("III", "Use Leaky ReLU"): (35.97, 0.0159),
}

def esc(value: Any) -> str:
    """HTML-escape anything that came from a scan, a plugin or a file."""
    return html.escape(str(value), quote=True)


# --- choosing what to picture ---------------------------------------------------------

def _block_detail(t: np.ndarray, s: int) -> float:
    h, w = (t.shape[0] // s) * s, (t.shape[1] // s) * s
    t = t[:h, :w]
    means = t.reshape(h // s, s, w // s, s).mean(axis=(1, 3))
    return float(((t - np.kron(means, np.ones((s, s)))) ** 2).mean())


def noise_sigma(t: np.ndarray) -> float:
    """Standard deviation of white noise in a map, by Immerkær's estimator (CVIU 64(2), 1996):
    ``sqrt(pi/2) / (6 (H-2)(W-2)) * sum |t * M|`` with ``M`` the difference of two Laplacians."""
    from scipy.signal import convolve2d

    m = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=float)
    h, w = t.shape
    if h < 3 or w < 3:
        return 0.0
    r = convolve2d(t, m, mode="valid")
    return float(math.sqrt(math.pi / 2) * np.abs(r).sum() / (6.0 * (h - 2) * (w - 2)))


def structure_score(t: np.ndarray, scale: int, clean: bool) -> float:
    """How much structure a (normalised, ``(y, x)``) truth map has that the LR scan cannot show.

    Measured as the *detail energy* at the super-resolution scale: the mean squared
    difference between the map and its own ``scale × scale`` block mean (what the LR grid
    loses, what a method has to recover).  On a noisy (measured) truth, white noise of
    variance σ² adds σ²(1 − 1/s²) to that energy; σ is estimated with :func:`noise_sigma`
    and its share subtracted, so a map of pure counting noise does not win.  On a clean
    truth nothing is subtracted.
    """
    scale = max(int(scale), 2)
    detail = _block_detail(t, scale)
    if not clean:
        detail -= noise_sigma(t) ** 2 * (1 - 1 / scale**2)
    return max(detail, 0.0)


def default_element(truth: np.ndarray, scale: int, clean: bool) -> int:
    """Index of the element (first axis of ``truth``) with the largest :func:`structure_score`."""
    scores = [structure_score(t, scale, clean) for t in truth]
    return int(np.argmax(scores))


def parse_crop(text: str | None) -> tuple[slice, slice] | None:
    """``"y0:y1,x0:x1"`` (HR pixels, end exclusive) → two slices; ``None`` for no crop."""
    if not text:
        return None
    try:
        ys, xs = text.split(",")
        y0, y1 = (int(v) for v in ys.split(":"))
        x0, x1 = (int(v) for v in xs.split(":"))
    except ValueError:
        raise ConfigError(f"--crop expects y0:y1,x0:x1 in HR pixels (e.g. 0:64,32:96), found {text!r}") from None
    if not (0 <= y0 < y1 and 0 <= x0 < x1):
        raise ConfigError(f"--crop {text!r}: expected 0 <= y0 < y1 and 0 <= x0 < x1")
    return slice(y0, y1), slice(x0, x1)


# --- gathering the run ----------------------------------------------------------------

@dataclass
class Panel:
    label: str
    maps: np.ndarray | None  # (element, y, x) counts, mean over seeds
    std: np.ndarray | None  # (element, y, x) counts, None with one seed
    n_seeds: int = 1
    error: str | None = None


@dataclass
class DatasetView:
    name: str
    title: str
    elements: list[str]
    scale: int
    rgb: np.ndarray  # (3, y, x) in [0, 1]
    lr: np.ndarray  # (element, y_lr, x_lr) counts
    truth: np.ndarray | None  # (element, y, x) counts (measured)
    truth_clean: np.ndarray | None
    panels: list[Panel] = field(default_factory=list)
    dwell: np.ndarray | None = None  # (element, y, x) counts: the short-dwell HR-step scan


def _counts(norm: np.ndarray, offset, span) -> np.ndarray:
    off = np.asarray(offset, dtype=np.float64)[:, None, None]
    spn = np.asarray(span, dtype=np.float64)[:, None, None]
    return (np.asarray(norm, dtype=np.float64) * spn + off).astype(np.float32)


def _dataset_view(run_dir: Path, dataset: str, labels: list[str], failed: dict,
                  key: str | None = None) -> DatasetView:
    """``key``: the run's folder of the dataset when it is not ``dataset`` itself (a
    misregistration sweep without amplitude 0 has only ``D~misA`` folders)."""
    import maxrf_bench as mb

    key = key or dataset
    inputs = mb.load_inputs(run_dir, key)
    offset, span = inputs.attrs.get("offset"), inputs.attrs.get("span")
    lr_norm = inputs["maps_lr"].values
    if offset is None or span is None:
        offset, span = np.zeros(len(lr_norm)), np.ones(len(lr_norm))
    scale = int(inputs.attrs.get("scale") or inputs["rgb"].sizes["y"] // inputs["maps_lr"].sizes["y_lr"])
    view = DatasetView(
        name=dataset, title=str(inputs.attrs.get("title", "")),
        elements=[str(e) for e in inputs["element"].values], scale=scale,
        rgb=np.asarray(inputs["rgb"].values, dtype=np.float32),
        lr=_counts(lr_norm, offset, span),
        truth=_counts(inputs["maps"].values, offset, span) if "maps" in inputs else None,
        truth_clean=_counts(inputs["maps_clean"].values, offset, span) if "maps_clean" in inputs else None,
        dwell=_counts(inputs["maps_dwell"].values, offset, span) if "maps_dwell" in inputs else None,
    )
    for label in labels:
        try:
            ds = mb.load_maps(run_dir, key, label)
        except MaxrfError as exc:
            view.panels.append(Panel(label, None, None, error=failed.get((dataset, label)) or str(exc)))
            continue
        seeds = list(ds.attrs.get("seeds", []) or [])
        std = ds["maps_std"].values if ("maps_std" in ds and len(seeds) > 1) else None
        view.panels.append(Panel(label, np.asarray(ds["maps"].values, dtype=np.float32),
                                 None if std is None else np.asarray(std, dtype=np.float32),
                                 max(len(seeds), 1)))
    return view


def _failed_cells(manifest: dict) -> dict[tuple[str, str], str]:
    from .rundir import failed_cells

    return {(c.dataset, col): c.error for c in failed_cells(manifest) for col in c.columns}


# --- tables ---------------------------------------------------------------------------

@dataclass
class Cell:
    text: str
    rank: int | None = None


@dataclass
class Table:
    """A rendered-later table: a caption, column headers, rows of (header cells, value cells)."""

    caption: str
    columns: list[str]
    rows: list[tuple[list[str], list[Cell], bool]]  # (row headers, cells, hidden behind the toggle)
    notes: list[str] = field(default_factory=list)
    row_headers: tuple[str, ...] = ("Dataset", "Metric")
    slug: str = ""  # the Markdown file's name

    @property
    def has_extra(self) -> bool:
        """Whether some rows hide behind the toggle."""
        return any(h for _, _, h in self.rows)


def _ranked_cells(summaries: list, metric: str, n_seeds: int, failed_flags: list[bool],
                  deterministic: list[bool] | None = None, ranks: list | None = None) -> list[Cell]:
    """Cells of one row, ranked by :func:`maxrf_bench.table.rank`.  A deterministic method
    (one run whatever the seed) shows its value alone, without a spread."""
    deterministic = deterministic or [False] * len(summaries)
    ranks = rank_summaries(summaries, metric) if ranks is None else ranks
    cells = []
    for s, r, f, det in zip(summaries, ranks, failed_flags, deterministic):
        if s is None and f:
            text = "failed"
        else:
            text = format_cell(s, metric, 1 if (det and s is not None and s.n == 1) else n_seeds)
        cells.append(Cell(text, r))
    return cells


def comparison_tables(results, failed: dict, ceilings: dict, deterministic: dict | None = None,
                      crops: dict | None = None) -> list[Table]:
    """Table I for every (protocol, truth) of the run: the model of
    :func:`maxrf_bench.table.table1`, as report tables."""
    out = []
    for t in tables1(results, failed=failed, ceilings=ceilings, deterministic=deterministic):
        rows = [([r.dataset, metric_title(r.metric)],
                 _ranked_cells(r.summaries, r.metric, t.n_seeds, r.failed, t.deterministic, r.ranks),
                 not r.main) for r in t.report_rows()]
        what = "LR maps" if t.protocol == "reduced" else "truth"
        notes = [f"Noise ceiling of {d}: {c:.2f} dB — the PSNR of the measured {what} against the "
                 f"clean ones; no method can expect more against the measured {what}."
                 for d, c in t.noise_ceilings().items()]
        from .table import crop_note

        out.append(Table(t.report_caption() + crop_note(crops, t.protocol), list(t.labels), rows, notes,
                         slug=f"table1-{t.protocol}-{t.truth}"))
    return out


def element_tables(results, dataset: str, elements: list[str], failed: dict,
                   deterministic: dict | None = None) -> list[Table]:
    """PSNR and RMSE per element of one dataset (full protocol), for each truth it has."""
    labels = results.methods
    det = [bool((deterministic or {}).get(lab)) for lab in labels]
    n_seeds = max(1, len(results.seeds))
    out = []
    for truth in results.truths(dataset):
        rows = []
        for el in elements:
            for metric in MAIN_METRICS:
                summ = results.summary(metric, truth=truth, protocol="full", element=el)
                summaries = [summ.get((dataset, lab)) for lab in labels]
                if all(s is None for s in summaries):
                    continue
                flags = [(dataset, lab) in failed for lab in labels]
                rows.append(([el, metric_title(metric)],
                             _ranked_cells(summaries, metric, n_seeds, flags, det), False))
        if rows:
            out.append(Table(f"{dataset}: per element, {TRUTH_TEXT[truth]}", list(labels), rows,
                             row_headers=("Element", "Metric"), slug=truth))
    return out


def _mean_std(v: np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else 0.0)


def _seed_stats(rows: list[dict], key: str) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one seed) of ``key`` over ablation rows."""
    return _mean_std(np.array([float(r[key]) for r in rows]))


def _mean_std_text(mean: float, std: float, fmt: str, n: int, signed: bool = False) -> str:
    text = f"{mean:{'+' if signed else ''}{fmt}}"
    return f"{text} ± {std:{fmt}}" if n > 1 else text


def _paired_difference(rows: list[dict], reference: list[dict], key: str) -> tuple[float, float, int] | None:
    """``key`` of ``rows`` minus that of ``reference`` seed by seed (the seeds both have):
    mean, sample std (0 for one seed) and the number of pairs; ``None`` without a pair.

    Pairing removes the spread the configurations share (same seed = same data sampling and
    initialisation), so a difference far below the per-configuration std can still be real."""
    ref = {r.get("seed", ""): float(r[key]) for r in reference}
    d = np.array([float(r[key]) - ref[r.get("seed", "")] for r in rows if r.get("seed", "") in ref])
    return (*_mean_std(d), int(d.size)) if d.size else None


def ablation_tables(run_dir: Path) -> list[tuple[Path, list[Table]]]:
    """Tables II and III from every ``ablation.csv`` in the run directory or one level below."""
    found = []
    for path in [run_dir / "ablation.csv", *sorted(run_dir.glob("*/ablation.csv"))]:
        if not path.is_file():
            continue
        try:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            tables = []
            for name, title in (("II", "Table II — ablation: loss terms"),
                                ("III", "Table III — ablation: network components")):
                groups: dict[str, list[dict]] = {}
                for r in rows:
                    if r.get("table") == name:
                        groups.setdefault(r["configuration"], []).append(r)
                if not groups:
                    continue
                confs = list(groups)
                psnr = [_seed_stats(groups[c], "psnr") for c in confs]
                rmse = [_seed_stats(groups[c], "rmse") for c in confs]
                clean = all(r.get("psnr_clean") not in (None, "") for c in confs for r in groups[c])
                pc = [_seed_stats(groups[c], "psnr_clean") for c in confs] if clean else []
                pr = rank([m for m, _ in psnr], [sd for _, sd in psnr], True)
                rr = rank([m for m, _ in rmse], [sd for _, sd in rmse], False)
                cr = rank([m for m, _ in pc], [sd for _, sd in pc], True) if clean else []
                body = []
                ref = groups[confs[0]]  # the table's first row: the full model
                paper_ref = PAPER_ABLATION.get((name, confs[0]))
                for i, c in enumerate(confs):
                    n_c = len(groups[c])
                    paper = PAPER_ABLATION.get((name, c))
                    cells = [Cell(_mean_std_text(*psnr[i], ".2f", n_c), pr[i]),
                             Cell(_mean_std_text(*rmse[i], ".4f", n_c), rr[i])]
                    if clean:
                        cells.append(Cell(_mean_std_text(*pc[i], ".2f", n_c), cr[i]))
                    for key in ("psnr", "psnr_clean") if clean else ("psnr",):
                        d = _paired_difference(groups[c], ref, key) if i else None
                        cells.append(Cell(_mean_std_text(*d[:2], ".3f", d[2], signed=True) if d else "—"))
                    cells += [Cell(f"{paper[0]:.2f}" if paper else "—"),
                              Cell(f"{paper[1]:.4f}" if paper else "—"),
                              Cell(f"{paper[0] - paper_ref[0]:+.2f}" if i and paper and paper_ref else "—")]
                    body.append(([c], cells, False))
                n_max = max(len(g) for g in groups.values())
                over = f" (mean ± std over {n_max} seeds)" if n_max > 1 else ""
                columns = [f"PSNR (dB), this run{over}", "RMSE, this run"]
                columns += ["PSNR (dB), clean truth"] if clean else []
                first = confs[0]
                columns += [f"ΔPSNR vs {first}, paired by seed"]
                columns += [f"ΔPSNR clean vs {first}, paired"] if clean else []
                columns += ["PSNR (dB), paper", "RMSE, paper", f"ΔPSNR vs {first}, paper"]
                tables.append(Table(title, columns, body,
                                    row_headers=("Configuration",), slug=name))
            if tables:
                found.append((path, tables))
        except (OSError, KeyError, ValueError, csv.Error) as exc:
            raise StoreError(f"{path} is not an ablation table (table,configuration,psnr,rmse): {exc}") from None
    return found


def _environment():
    """The templates of the report (``maxrf_bench/templates``), with autoescaping: every
    ``{{ value }}`` that is not already markup is escaped by :func:`esc` (``html.escape``
    with quotes), so a string from a scan, a plugin or the manifest can never become markup."""
    from jinja2 import Environment, PackageLoader, StrictUndefined
    from markupsafe import Markup

    def finalize(value):
        return value if isinstance(value, Markup) else Markup(esc(value))

    return Environment(loader=PackageLoader("maxrf_bench", "templates"), autoescape=True,
                       finalize=finalize, keep_trailing_newline=True, undefined=StrictUndefined)


def table_html(t: Table, toggle_id: str | None = None) -> str:
    """One table as HTML (``templates/table.html.j2``); ``toggle_id``: a check box that shows
    the rows hidden behind it."""
    return str(_environment().get_template("table.html.j2").module.table(t, toggle_id))


def _md_escape(text: str) -> str:
    # Markdown passes raw HTML through: a scan's "<script>" must stay text there too
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("|", "\\|").replace("\n", " "))


def table_markdown(t: Table) -> str:
    """GitHub-flavoured Markdown; best as **x**, second as <u>x</u>."""
    head = [*t.row_headers, *t.columns]
    lines = [f"**{_md_escape(t.caption)}** (best in bold, second underlined)", "",
             "| " + " | ".join(_md_escape(h) for h in head) + " |",
             "|" + "|".join(["---"] * len(t.row_headers) + ["---:"] * len(t.columns)) + "|"]
    for heads, cells, _ in t.rows:
        vals = []
        for c in cells:
            v = _md_escape(c.text)
            vals.append(f"**{v}**" if c.rank == 1 else f"<u>{v}</u>" if c.rank == 2 else v)
        lines.append("| " + " | ".join([*(_md_escape(h) for h in heads), *vals]) + " |")
    lines += [""] + [f"{_md_escape(n)}" for n in t.notes]
    return "\n".join(lines).rstrip() + "\n"


# --- figures --------------------------------------------------------------------------

def _psnr_of(results, dataset: str, label: str, element: str) -> float | None:
    v = results.get(dataset, label, "psnr", element)
    return None if math.isnan(v) else v


def figure_png(view: DatasetView, idx: int, results, crop: tuple[slice, slice] | None) -> bytes:
    """Fig. 2 of one dataset for element ``idx`` as PNG bytes (see the module docstring)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    el = view.elements[idx]
    s = view.scale
    ys, xs = crop if crop else (slice(None), slice(None))

    def cut(a):
        return a[ys, xs]

    truth = cut(view.truth[idx]) if view.truth is not None else None
    lr_up = cut(np.kron(view.lr[idx], np.ones((s, s), dtype=np.float32)))
    photo = np.clip(cut(np.moveaxis(view.rgb, 0, -1)), 0, 1)  # (y, x, 3)
    panels = [p for p in view.panels if p.maps is not None]
    maps = {p.label: cut(p.maps[idx]) for p in panels}
    stds = {p.label: cut(p.std[idx]) for p in panels if p.std is not None}
    ref = truth if truth is not None else lr_up
    lo = float(np.nanpercentile(ref, 0.5))
    hi = float(np.nanpercentile(ref, 99.5))
    if not hi > lo:
        lo, hi = float(np.nanmin(ref)), float(np.nanmax(ref)) + 1e-6
    map_norm = Normalize(lo, hi)
    err_norm = std_norm = None
    if truth is not None and maps:
        e = max(float(np.nanpercentile(np.abs(m - truth), 99.5)) for m in maps.values())
        err_norm = Normalize(-max(e, 1e-6), max(e, 1e-6))
    if stds:
        smax = max(float(np.nanpercentile(v, 99.5)) for v in stds.values())
        std_norm = Normalize(0, max(smax, 1e-6))

    heads = [("truth", f"ground truth {el}", truth)] if truth is not None else \
        [("lr", f"LR input {el} ({s}×)", lr_up)]
    if view.dwell is not None:  # what +F fuses with (--acquire dwell, import --short-dwell)
        heads.append(("dwell", f"short-dwell scan {el}\n(HR step, binned into the LR input)",
                      cut(view.dwell[idx])))
    heads.append(("photo", "photograph", photo))
    items = heads + [("method", p.label, maps[p.label]) for p in panels]
    n_chunks = -(-len(items) // MAX_COLUMNS)
    ncol = -(-len(items) // n_chunks)  # rows of equal length: 8 panels → 4 + 4, not 6 + 2
    chunks = [items[i:i + ncol] for i in range(0, len(items), ncol)]
    kinds = ["map"] + (["err"] if err_norm is not None else []) + (["std"] if std_norm is not None else [])

    def chunk_kinds(chunk):  # no std row under panels that have no spread
        return [k for k in kinds if k != "std" or any(lab in stds for _, lab, _ in chunk)]

    nrows = sum(len(chunk_kinds(c)) for c in chunks)
    h, w = ref.shape
    # about one figure pixel per map pixel up to ~3 in per panel (110 dpi): big maps stay legible
    panel_w = float(np.clip(w / 110.0, 2.0, 3.0))
    panel_h = panel_w * h / w + 0.42  # the image and a two-line title
    fig = Figure(figsize=(ncol * panel_w + 1.0, nrows * panel_h + 0.35), dpi=110, layout="constrained")
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.04, wspace=0.02, hspace=0.02)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncol, squeeze=False)
    cmaps = {"map": MAP_CMAP, "err": ERR_CMAP, "std": STD_CMAP}
    norms = {"map": map_norm, "err": err_norm, "std": std_norm}
    bar_label = {"map": f"{el} (counts)", "err": "map − truth (counts)", "std": "std over seeds (counts)"}
    row = 0
    for chunk in chunks:
        for kind in chunk_kinds(chunk):
            mappable = None
            for j in range(ncol):
                ax = axes[row, j]
                ax.set_xticks([])
                ax.set_yticks([])
                for sp in ax.spines.values():
                    sp.set_visible(False)
                if j >= len(chunk):
                    ax.set_visible(False)
                    continue
                what, label, img = chunk[j]
                if kind == "map":
                    if what == "photo":
                        ax.imshow(img, interpolation="antialiased")
                        title = label
                    else:
                        mappable = ax.imshow(img, cmap=MAP_CMAP, norm=map_norm, interpolation="antialiased")
                        title = label
                        if what == "method":
                            psnr = _psnr_of(results, view.name, label, el)
                            title = f"{label}\nPSNR {psnr:.2f} dB" if psnr is not None else f"{label}\n(no truth)"
                    ax.set_title(title, fontsize=7.5, parse_math=False)
                elif kind == "err" and what == "method":
                    mappable = ax.imshow(img - truth, cmap=ERR_CMAP, norm=err_norm, interpolation="antialiased")
                    rmse = float(np.sqrt(np.mean((img - truth) ** 2)))
                    ax.set_title(f"error of {label}\nRMSE {rmse:.3g} counts", fontsize=7, parse_math=False)
                elif kind == "std" and what == "method" and label in stds:
                    mappable = ax.imshow(stds[label], cmap=STD_CMAP, norm=std_norm, interpolation="antialiased")
                    n = next(p.n_seeds for p in panels if p.label == label)
                    ax.set_title(f"std of {label}\nover {n} seeds", fontsize=7, parse_math=False)
                else:
                    ax.axis("off")
            if mappable is None:
                from matplotlib.cm import ScalarMappable

                mappable = ScalarMappable(norm=norms[kind], cmap=cmaps[kind])
            cb = fig.colorbar(mappable, ax=list(axes[row, :]), shrink=0.85, aspect=18, pad=0.01)
            cb.ax.tick_params(labelsize=6)
            cb.set_label(bar_label[kind], fontsize=6.5, parse_math=False)
            row += 1
    where = f", crop y {ys.start}:{ys.stop}, x {xs.start}:{xs.stop}" if crop else ""
    fig.suptitle(f"{view.name} — {el}{where}", fontsize=9, parse_math=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# --- the page -------------------------------------------------------------------------

def _manifest_view(manifest: dict) -> dict:
    """What the manifest section of the page shows (``templates/manifest.html.j2``)."""
    if not manifest:
        return {}
    kv = [("command", " ".join(map(str, manifest.get("command", [])))),
          ("started", manifest.get("started")),
          ("finished", manifest.get("finished") or "(not finished)"),
          ("git commit", manifest.get("git_commit"))]
    opts = manifest.get("options", {})
    for key in ("seeds", "seed", "preset", "protocols", "acquire", "operator", "sigma", "device", "scale", "sets"):
        if key in opts and opts[key] not in (None, {}, []):
            kv.append((key, json.dumps(opts[key], default=str) if isinstance(opts[key], (dict, list))
                       else opts[key]))
    for key, name in (("host", "machine"), ("versions", "versions"), ("plugins", "plugins")):
        entries = manifest.get(key, {})
        if entries:
            kv.append((name, ", ".join(f"{k} {v}" for k, v in entries.items())))
    columns = manifest.get("columns") or {}
    params = manifest.get("params") or {}
    rows = []
    for label in columns or params:
        c = columns.get(label, {})
        flags = [f for f, on in (("projects", c.get("projects")), ("deterministic", c.get("deterministic")))
                 if on]
        rows.append({"label": label, "method": c.get("method", label), "flags": ", ".join(flags),
                     "params": json.dumps(c.get("params", params.get(label, {})), default=str),
                     "plugin": f"{c.get('plugin', '')} {c.get('plugin_version', '')}".strip()})
    timings = []
    for t in manifest.get("timings") or []:
        secs = t.get("seconds")
        timings.append({"dataset": t.get("dataset", ""),
                        "where": "@" + t["protocol"] if t.get("protocol") not in (None, "full") else "",
                        "method": t.get("method", ""), "seed": t.get("seed", ""),
                        "seconds": f"{secs:.1f}" if isinstance(secs, (int, float)) else secs,
                        "reused": "yes" if t.get("reused") else "", "worker": t.get("worker") or "",
                        "error": t.get("error") or ""})
    return {"kv": kv, "columns": rows, "timings": timings,
            "json": json.dumps(manifest, indent=1, default=str)}


def _resolve_out(run_dir: Path, out: str | os.PathLike | None) -> Path:
    if out is None:
        return run_dir / "report.html"
    out = Path(out)
    if out.is_dir() or str(out).endswith(("/", os.sep)):
        return out / "index.html"
    return out


def _choose_element(view: DatasetView, element: str | None) -> tuple[int, str]:
    """(index, how it was chosen) for the figure of ``view``."""
    if element is not None and element in view.elements:
        return view.elements.index(element), "chosen with --element"
    note = f"{element!r} is not in this scan; " if element is not None else ""
    if view.truth_clean is not None:
        return default_element(view.truth_clean / np.maximum(
            np.ptp(view.truth_clean, axis=(1, 2), keepdims=True), 1e-12), view.scale, True), \
            note + "the element whose clean truth has the most detail below the LR scale"
    if view.truth is not None:
        t = view.truth - view.truth.min(axis=(1, 2), keepdims=True)
        t = t / np.maximum(t.max(axis=(1, 2), keepdims=True), 1e-12)
        return default_element(t, view.scale, False), \
            note + "the element whose truth has the most detail below the LR scale, above its noise"
    t = view.lr - view.lr.min(axis=(1, 2), keepdims=True)
    t = t / np.maximum(t.max(axis=(1, 2), keepdims=True), 1e-12)
    return default_element(t, 2, False), note + "the element whose LR map has the most detail, above its noise"


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
                 element: str | None = None, crop: str | None = None, assets: bool = True) -> Path:
    """Write the self-contained HTML report of ``run_dir``; return its path.

    ``out``: the HTML file (default ``run_dir/report.html``; an existing folder gets
    ``index.html``).  ``element``: the element line of the figures (default: the one whose
    truth has the most structure, :func:`structure_score`).  ``crop``: ``"y0:y1,x0:x1"`` in
    HR pixels.  ``assets``: also write ``<name>_files/`` (PNG figures, Markdown tables).
    """
    import maxrf_bench as mb

    from .results import Results
    from .rundir import RunDir, read_manifest

    run_dir = Path(run_dir)
    ablations = ablation_tables(run_dir)
    if ablations and not RunDir(run_dir).results.exists():
        results = Results([])  # an ``ablate`` output: its tables only (its runs are below it)
    else:
        results = mb.read_results(run_dir)
    crop_slices = parse_crop(crop)
    manifest = read_manifest(run_dir)
    failed = _failed_cells(manifest)
    missing = [lab for (_, lab) in failed if lab not in results.methods]
    if missing:  # a column none of whose runs finished still gets its column, marked failed
        results = Results(results.rows, extra_methods=list(dict.fromkeys(missing)),
                          all_rows=results.all_rows)
    ceilings = dict(manifest.get("noise_ceiling_db") or {})
    deterministic = {lab: bool(c.get("deterministic")) for lab, c in (manifest.get("columns") or {}).items()}
    given_folder = out is not None and (Path(out).is_dir() or str(out).endswith(("/", os.sep)))
    out = _resolve_out(run_dir, out)
    asset_dir_name = f"{out.stem}_files"
    # the ownership rule, before anything is computed: a page and a folder of ours, or new
    from .atomic import check_output

    if given_folder and out.parent.is_dir() and out.parent.resolve() != run_dir.resolve():
        # -o FOLDER: an empty folder, or one holding a report of ours; never a folder of the
        # user's files, nor one that holds the run
        check_output(out.parent, kind="report folder",
                     owned=lambda p: owned_report_page(p / "index.html"), inputs=[run_dir])

    check_output(out, kind="maxrf-bench report page", owned=owned_report_page, is_file=True)
    if assets:
        check_output(out.parent / asset_dir_name, kind="report folder", owned=owned_report_assets,
                     option="the report's folder")

    # the figures show what Table I scores: the unwarped photograph, or for a sweep without
    # amplitude 0 its smallest amplitude (:class:`Results`), whose folders are ``D~misA``
    base_amps = {r["misregister"] for r in results.rows} - {"", "0"}
    base_amp = float(min(base_amps, key=float)) if base_amps else None
    views = []
    for d in results.datasets:
        labels = [lab for lab in results.methods if (d, lab) in failed or any(
            r["dataset"] == d and r["method"] == lab and r["protocol"] == "full" for r in results.rows)]
        if not labels:
            continue
        key = dataset_key(d, misregister=base_amp)
        views.append(_dataset_view(run_dir, d, labels, failed, key=key))
        if d not in ceilings:
            try:
                c = mb.noise_ceiling(run_dir, key)
            except MaxrfError:
                c = None
            if c is not None:
                ceilings[d] = c
    if element is not None and views and not any(element in v.elements for v in views):
        known = sorted({e for v in views for e in v.elements})
        raise ConfigError(f"--element {element!r} is in no dataset of the run; expected one of: {', '.join(known)}")
    if crop_slices is not None:
        for v in views:
            h, w = v.rgb.shape[-2:]
            if crop_slices[0].stop > h or crop_slices[1].stop > w:
                raise ConfigError(f"--crop {crop!r} reaches outside {v.name!r} ({h}×{w} HR pixels)")

    md_files: dict[str, str] = {}
    png_files: dict[str, bytes] = {}
    tables = comparison_tables(results, failed, ceilings, deterministic, manifest.get("crops"))
    for i, t in enumerate(tables):
        md_files[f"{t.slug or f'table1-{i + 1}'}.md"] = table_markdown(t)
    per_element = None
    if any(v.truth is not None for v in views):
        per_element = []
        for v in views:
            for t in element_tables(results, v.name, v.elements, failed, deterministic):
                per_element.append(t)
                md_files[f"elements-{_slug(v.name)}-{t.slug}.md"] = table_markdown(t)
    from .trust import trust_markdown  # misregistration sweep and hidden-layer groups

    trust = trust_markdown(results, manifest)
    if trust:
        md_files["trust.md"] = trust + "\n"
        from .markup import markdown_html

        trust = markdown_html(trust)
    figures = []
    for v in views:
        fig = {"name": v.name, "png": None, "missing": [],
               "heading": v.name + (f" — {v.title}" if v.title and v.title != v.name else "")}
        figures.append(fig)
        if not any(p.maps is not None for p in v.panels):
            continue
        idx, how = _choose_element(v, element)
        png = figure_png(v, idx, results, crop_slices)
        png_files[f"fig2-{_slug(v.name)}-{_slug(v.elements[idx])}.png"] = png
        fig.update(
            png=base64.b64encode(png).decode("ascii"), alt=f"Fig. 2 of {v.name}, element {v.elements[idx]}",
            element=v.elements[idx], how=how, missing=[p for p in v.panels if p.maps is None],
            what=("ground truth, photograph, each method's map (one colour scale) and below it its error "
                  "map − truth (another, symmetric about 0)") if v.truth is not None else
            ("LR input, " + ("the short-dwell HR-step scan it was binned from, " if v.dwell is not None else "")
             + "photograph and each method's map (one colour scale; this scan has no ground truth)"),
            seeds_note="; last row: standard deviation over seeds" if any(p.std is not None for p in v.panels) else "")
    for k, (path, found) in enumerate(ablations):
        for t in found:
            md_files[f"ablation-{k + 1}-table-{t.slug}.md"] = table_markdown(t)
    from .acquisition import report_section
    from .tradeoff import dwell_table, element_table, fill_short_dwell, group_table

    fill_short_dwell(run_dir, manifest)  # a run made before the protocol recorded it
    acquisition_html, pngs, mds = report_section(  # scan-time trade-off, per group and map too
        results, manifest, "\n\n".join(t for t in (group_table(results, manifest, markdown=True),
                                                    element_table(results, manifest, markdown=True),
                                                    dwell_table(results, manifest, markdown=True)) if t))
    png_files.update(pngs)
    md_files.update(mds)
    page = _environment().get_template("report.html.j2").render(
        title="maxrf-bench report", view_names=", ".join(v.name for v in views),
        run_path=run_dir.resolve(), command=" ".join(map(str, manifest.get("command", []))),
        written=time.strftime("%Y-%m-%d %H:%M"), version=mb.__version__,
        several_seeds=len(results.seeds) > 1, tables=tables,
        element_tables=per_element, figures=figures, trust=trust,
        ablations=[(path.relative_to(run_dir), found) for path, found in ablations],
        acquisition_html=acquisition_html,
        m=_manifest_view(manifest))
    from .atomic import location_error

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if assets:
            _write_assets(out.parent / asset_dir_name, png_files, md_files)
        atomic_write_text(out, page)
    except OSError as exc:  # read-only, name too long, no space: the user's location
        err = location_error(exc, out, "report")
        if err is None:
            raise
        raise err from None
    return out


def _slug(text: str) -> str:
    """A file-name part for a dataset or element name: safe, at most 80 bytes, and unique (a
    name that had to change ends in a hash of the original, so ``a b`` and ``a_b`` differ)."""
    import hashlib

    from .atomic import safe_stem

    stem = safe_stem(text, 80)
    if stem != str(text):
        stem = f"{stem[:71]}-{hashlib.sha1(str(text).encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    return stem


#: the marker file of a report's folder (what makes it ours to replace)
ASSETS_MARKER = ".maxrf-bench-report"


def owned_report_page(path: Path) -> bool:
    """A report page of ours: an HTML file whose title says maxrf-bench report."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return Path(path).is_file() and b"<title>maxrf-bench report" in head


def owned_report_assets(path: Path) -> bool:
    """A report folder of ours: it holds the marker (earlier versions: only PNG figures and
    Markdown tables, beside a report page of ours)."""
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / ASSETS_MARKER).is_file():
        return True
    entries = list(path.iterdir())
    page = path.with_name(path.name[:-len("_files")] + ".html") if path.name.endswith("_files") else None
    return (bool(entries) and page is not None and owned_report_page(page)
            and all(p.is_file() and p.suffix in (".png", ".md") for p in entries))


def _write_assets(folder: Path, pngs: dict[str, bytes], mds: dict[str, str]) -> None:
    """Write the PNG figures and Markdown tables into a temporary sibling, then swap it in."""
    from .atomic import output_dir

    with output_dir(folder, kind="report folder", owned=owned_report_assets,
                    option="the report's folder") as tmp:
        (tmp / ASSETS_MARKER).write_text("written by maxrf-bench report; replaced by the next one\n")
        for name, data in pngs.items():
            (tmp / name).write_bytes(data)
        for name, text in mds.items():
            (tmp / name).write_text(text, encoding="utf-8")
