"""Table I, the paper's comparison table, as one model that every output renders.

:func:`table1` selects what a table shows for one protocol and truth: datasets × metrics
rows, one column per column label, each cell a :class:`maxrf_bench.Summary` over the seeds
(mean ± standard deviation) with its rank.  The terminal table (:func:`run_tables`,
``maxrf-bench run`` and ``maxrf-bench table``), the Markdown and the HTML report
(:mod:`maxrf_bench.report`) only render it.

Selection: a dataset scored against the table's truth shows RMSE and PSNR (the *main*
metrics, as in the paper); one without it shows the no-reference metrics
(:data:`NO_REFERENCE`).  The other metrics of the run are *extra* rows (behind a toggle in
the report); the terminal shows the metrics asked for (``--metrics``; by default the main
ones and every plugin metric, :func:`default_metrics`) and the seconds.  A metric's
direction is :func:`higher_is_better` (a plugin metric's from its registration).

Ranking (:func:`rank`, the tie rule): a column is marked best only where its mean beats the
second's by more than the larger of the two standard deviations; otherwise both (and every
other column within that margin of the best) are marked as tied best.  The next column
after the best (or the tied group) is marked second.  With one seed the spreads are 0 and
any difference decides.  Seconds are not ranked.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .config import dataset_key
from .results import TRUTHLESS, Results, Summary

LOWER_IS_BETTER = {"rmse", "sam", "ergas", "consistency", "seconds", "d_lambda", "d_s", "photo_leak"}
FORMATS = {"rmse": "{:.4f}", "psnr": "{:.2f}", "ssim": "{:.4f}", "sam": "{:.2f}",
           "ergas": "{:.3f}", "consistency": "{:.2e}", "seconds": "{:.1f}", "qnr": "{:.4f}",
           "d_lambda": "{:.4f}", "d_s": "{:.4f}", "photo_leak": "{:.3f}"}
TITLES = {"rmse": "RMSE", "psnr": "PSNR", "ssim": "SSIM", "sam": "SAM", "ergas": "ERGAS",
          "qnr": "QNR", "d_lambda": "D_lambda", "d_s": "D_s", "photo_leak": "photo-leak"}
#: the metrics of a dataset scored against a truth, as in the paper
MAIN_METRICS = ("rmse", "psnr")
#: the metrics of a dataset without the table's truth
NO_REFERENCE = ("consistency", "qnr", "d_lambda", "d_s")
HIGHER_IS_BETTER = {"psnr", "ssim", "qnr"}

TRUTH_TEXT = {"measured": "against the measured truth (the scan's maps, with counting noise)",
              "clean": "against the clean truth (the simulator's noise-free maps)"}
REDUCED_TRUTH_TEXT = {"measured": "against the measured LR maps",
                      "clean": "against the clean LR maps (U of the simulator's noise-free maps)"}
PROTOCOL_TEXT = {"full": "full resolution",
                 "reduced": "reduced resolution (Wald: LR maps and photograph degraded once more by U "
                            "and super-resolved back to the measured grid)"}
_SHORT_TRUTH = {"measured": "against the measured truth", "clean": "against the noise-free truth"}
NO_TRUTH_TEXT = "no-reference metrics only (no ground truth in these scans)"
_SHORT_PROTOCOL = {"full": "full resolution",
                   "reduced": "reduced resolution (Wald: degraded once more, scored on the measured LR maps)"}


def metric_title(metric: str) -> str:
    return TITLES.get(metric, metric)


def higher_is_better(metric: str) -> bool:
    """The direction of ``metric``: the built-ins' from these tables, a plugin metric's from
    its registration (higher when it cannot be found)."""
    if metric in LOWER_IS_BETTER:
        return False
    if metric in HIGHER_IS_BETTER:
        return True
    try:
        from .plugins import get_metrics

        item = get_metrics().get(metric)
    except Exception:  # noqa: BLE001 - a table must print even when plugins do not load
        item = None
    return True if item is None else bool(item.higher_is_better)


def default_metrics(results: Results) -> list[str]:
    """The terminal's rows when none are asked for: RMSE and PSNR, then every metric of the
    run that the host does not know (a plugin's), so plugin metrics show without asking."""
    known = set(FORMATS) | set(TITLES) | set(NO_REFERENCE)
    extra = sorted({r["metric"] for r in results.rows} - known)
    return ["rmse", "psnr", *extra]


def rank(means: list[float], stds: list[float], higher_is_better: bool) -> list[int | None]:
    """Per column: 1 (best, or tied best), 2 (second) or ``None``; NaN means are unranked."""
    finite = [i for i, m in enumerate(means) if not math.isnan(m)]
    out: list[int | None] = [None] * len(means)
    if len(finite) < 2:
        return out
    sign = -1.0 if higher_is_better else 1.0
    order = sorted(finite, key=lambda i: sign * means[i])
    best = order[0]

    def sd(i):
        return 0.0 if math.isnan(stds[i]) else stds[i]

    tied = [i for i in order if i == best or abs(means[i] - means[best]) <= max(sd(best), sd(i))]
    for i in tied:
        out[i] = 1
    rest = [i for i in order if i not in tied]
    if rest and len(finite) > 2:
        out[rest[0]] = 2
    return out


def rank_summaries(summaries: list[Summary | None], metric: str) -> list[int | None]:
    """:func:`rank` of one row of summaries (``None`` for every cell of the seconds)."""
    if metric == "seconds":
        return [None] * len(summaries)
    means = [s.mean if s is not None and s.n else math.nan for s in summaries]
    stds = [s.std if s is not None and s.n else math.nan for s in summaries]
    return rank(means, stds, higher_is_better(metric))


def format_cell(s: Summary | None, metric: str, seeds: int) -> str:
    """``mean ± std`` (``mean`` alone for one seed or a deterministic method)."""
    if s is None or s.n == 0 or math.isnan(s.mean):
        return "—"
    fmt = FORMATS.get(metric, "{:.4g}")
    text = fmt.format(s.mean)
    if seeds > 1 and s.n > 1:
        text += " ± " + fmt.format(s.std)
    elif seeds > 1:
        text += " (1 run)"
    return text


@dataclass
class Row:
    """One row of Table I: a metric of a dataset over every column."""

    dataset: str
    metric: str
    summaries: list[Summary | None]
    ranks: list[int | None]
    failed: list[bool]          # per column: no figure because its cells failed
    main: bool                  # a main (or no-reference) metric; else an extra row


@dataclass
class Table1:
    """Table I of one protocol and truth (see the module docstring)."""

    protocol: str
    truth: str
    labels: list[str]
    seeds: list[int]
    deterministic: list[bool]   # per column
    datasets: list[str]         # datasets with figures under this protocol
    with_truth: list[str]       # those scored against this truth
    rows: list[Row]
    ceilings: dict[str, float] = field(default_factory=dict)  # dataset → noise ceiling (dB)

    @property
    def n_seeds(self) -> int:
        return max(1, len(self.seeds))

    def terminal_rows(self, metrics=MAIN_METRICS, extra=("seconds",)) -> list[Row]:
        """The terminal's rows: per dataset ``metrics`` then ``extra`` (the seconds); a
        dataset without the table's truth first shows the no-reference metrics."""
        by = {(r.dataset, r.metric): r for r in self.rows}
        out = []
        for d in self.datasets:
            wanted = [*metrics, *extra] if d in self.with_truth else list(dict.fromkeys(
                [*NO_REFERENCE, *metrics, *extra]))
            out += [by[d, m] for m in wanted if (d, m) in by]
        return out

    def report_rows(self) -> list[Row]:
        """The report's rows: every metric; under the clean truth only the datasets that
        have it."""
        return [r for r in self.rows if self.truth == "measured" or r.dataset in self.with_truth]

    def noise_ceilings(self) -> dict[str, float]:
        """The noise ceilings to state below a table on the measured truth."""
        if self.truth != "measured":
            return {}
        return {d: c for d, c in self.ceilings.items() if d in self.with_truth}

    def caption(self, seeds: list[int] | None = None) -> str:
        """The terminal's caption (``seeds``: the run's, from its manifest)."""
        seeds = seeds or self.seeds
        spread = (f"mean ± std over seeds {','.join(map(str, seeds))} (deterministic methods: 1 run)"
                  if len(seeds) > 1 else f"seed {seeds[0]}" if seeds else "")
        return (f"Table I — {_SHORT_PROTOCOL[self.protocol]}, {self._truth_text(_SHORT_TRUTH)}; "
                f"{spread}; best bold, second underlined, ties marked alike")

    def _truth_text(self, texts: dict[str, str]) -> str:
        """What the table is scored against; a table of scans without a ground truth holds
        only the no-reference metrics and says so."""
        if not self.with_truth:
            return NO_TRUTH_TEXT
        return texts[self.truth]

    def report_caption(self) -> str:
        truths = REDUCED_TRUTH_TEXT if self.protocol == "reduced" else TRUTH_TEXT
        text = f"Table I — {PROTOCOL_TEXT.get(self.protocol, self.protocol)}, {self._truth_text(truths)}"
        spread = (f"mean ± std over seeds {', '.join(map(str, self.seeds))}" if self.n_seeds > 1
                  else f"seed {self.seeds[0]}" if self.seeds else "")
        return f"{text}; {spread}" if spread else text


def _protocol_datasets(results: Results, protocol: str) -> list[str]:
    return [d for d in results.datasets
            if any(r["dataset"] == d and r["protocol"] == protocol for r in results.rows)]


def table1(results: Results, protocol: str, truth: str, *,
           failed: dict[tuple[str, str], str] | None = None,
           ceilings: dict[str, float] | None = None,
           deterministic: dict[str, bool] | None = None) -> Table1:
    """Table I of ``results`` for one protocol and truth.  ``failed`` maps ``(dataset,
    label)`` to an error (those cells read ``failed``); ``ceilings`` maps dataset keys to
    noise ceilings; ``deterministic`` says which columns ran once."""
    failed = failed or {}
    labels = results.methods
    datasets = _protocol_datasets(results, protocol)
    with_truth = [d for d in datasets if any(
        r["dataset"] == d and r["protocol"] == protocol and r["truth"] == truth for r in results.rows)]
    rows = []
    for d in datasets:
        present = [m for m in results.metrics() if any(
            r["dataset"] == d and r["protocol"] == protocol and r["metric"] == m
            and r["truth"] in (truth, TRUTHLESS) for r in results.rows)]
        if d in with_truth:
            main = [m for m in MAIN_METRICS if m in present]
        else:  # no truth: the no-reference metrics are all there is
            main = [m for m in NO_REFERENCE if m in present]
        for metric in [*main, *(m for m in present if m not in main)]:
            summ = results.summary(metric, truth=truth, protocol=protocol)
            summaries = [summ.get((d, lab)) for lab in labels]
            rows.append(Row(d, metric, summaries, rank_summaries(summaries, metric),
                            [(d, lab) in failed for lab in labels], metric in main))
    found = {d: (ceilings or {}).get(dataset_key(d, protocol)) for d in datasets}
    return Table1(protocol, truth, list(labels), results.seeds,
                  [bool((deterministic or {}).get(lab)) for lab in labels], datasets, with_truth,
                  rows, {d: c for d, c in found.items() if c is not None})


def tables1(results: Results, truths=("measured", "clean"), **kw) -> list[Table1]:
    """Table I for every protocol of the run and each of ``truths`` it has figures for."""
    out = []
    for protocol in results.table_protocols:
        for truth in truths:
            t = table1(results, protocol, truth, **kw)
            if truth == "clean" and not t.with_truth:
                continue
            out.append(t)
    return out


# --- the terminal ---------------------------------------------------------------------

def render_text(t: Table1, *, color: bool = False, seeds: list[int] | None = None,
                metrics=MAIN_METRICS) -> str:
    """A Table I as aligned text, rows :meth:`Table1.terminal_rows` of ``metrics``: best as
    ``**x**`` and second as ``_x_`` (bold and underlined with ``color``); the noise ceilings
    below.  ``seeds``: the run's (the manifest's): a grid of deterministic methods has one
    seed in its rows, but its cells still ran once for several seeds and say so."""
    n_seeds = max(1, len(t.seeds), len(seeds or []))
    header = ["Dataset", "Metric", *t.labels]
    body = []
    for row in t.terminal_rows(metrics):
        cells = []
        for s, r, f in zip(row.summaries, row.ranks, row.failed):
            text = "failed" if (s is None and f) else format_cell(s, row.metric, n_seeds)
            cells.append((text, r))
        body.append([row.dataset, metric_title(row.metric), *cells])
    widths = [len(h) for h in header]
    for row in body:
        for j, c in enumerate(row):
            n = len(c[0]) + (4 if not color else 0) if isinstance(c, tuple) else len(c)
            widths[j] = max(widths[j], n)
    lines = ["  ".join(h.ljust(widths[j]) for j, h in enumerate(header))]
    lines.append("  ".join("-" * w for w in widths))
    last_ds = None
    for row in body:
        out = []
        for j, c in enumerate(row):
            if isinstance(c, tuple):
                out.append(_mark(c[0], c[1], color, widths[j]))
            else:
                out.append((c if (j != 0 or c != last_ds) else "").ljust(widths[j]))
        last_ds = row[0]
        lines.append("  ".join(out).rstrip())
    for ds, ceiling in t.noise_ceilings().items():
        lines.append(f"noise ceiling of {ds}: {ceiling:.2f} dB (PSNR of the measured truth "
                     f"against the clean one; no method can expect more on the measured truth)")
    return (t.caption(seeds) + "\n" + "\n".join(lines))


def _mark(text, r, color, width):
    if color:
        import click

        pad = " " * (width - len(text))
        if r == 1:
            return click.style(text, bold=True) + pad
        if r == 2:
            return click.style(text, underline=True) + pad
        return text + pad
    if r == 1:
        text = f"**{text}**"
    elif r == 2:
        text = f"_{text}_"
    return text.ljust(width)


def run_tables(run_dir, *, truth: str = "measured", color: bool = False,
               metrics: list[str] | None = None) -> str:
    """The tables of a run directory (one per protocol and truth; ``truth='all'``: both),
    with its failed cells and noise ceilings (from the manifest).  ``metrics``: the rows,
    in order (``["all"]``: every metric of the run); default: the run's ``--metrics`` when
    it had them, else :func:`default_metrics`."""
    from .rundir import failed_cells, read_manifest
    from .results import read_results

    results = read_results(run_dir)
    manifest = read_manifest(run_dir)
    cells = failed_cells(manifest)
    failed = {(c.dataset, col): c.error for c in cells for col in c.columns}
    notes = []
    for c in cells:
        seed = f" (seed {c.seed})" if c.seed is not None else ""
        where = "" if c.protocol == "full" else f"@{c.protocol}"
        notes.append(f"failed: {c.dataset}{where} / {', '.join(c.columns)}{seed}: {c.error}")
    for text in manifest.get("metric_failures", []):
        notes.append(f"{text} (left out of every cell; the maps and other metrics are complete)")
    present = sorted({r["metric"] for r in results.rows} - {"seconds"})
    if metrics is None and manifest:
        asked = (manifest.get("options", {}) or {}).get("metrics")
        metrics = [x for x in asked if x != "seconds"] if asked else None
    if metrics == ["all"]:
        metrics = present
    elif metrics is not None:
        unknown = [x for x in metrics if x not in present]
        if unknown and results.rows:
            from .errors import ConfigError

            raise ConfigError(f"--metrics: expected metrics of this run ({', '.join(present)}), "
                              f"found {', '.join(repr(x) for x in unknown)}")
    rows = tuple(metrics if metrics is not None else default_metrics(results))
    if failed:  # failed columns appear even when no seed of them finished
        known = set(results.methods)
        extra = [col for (_, col) in failed if col not in known]
        results = Results(results.rows, extra_methods=list(dict.fromkeys(extra)),
                          all_rows=results.all_rows)
    truths = [t for t in ("measured", "clean") if truth in (t, "all")]
    seeds = manifest.get("options", {}).get("seeds")
    blocks = [_with_crop_note(render_text(t, color=color, seeds=seeds, metrics=rows),
                              manifest.get("crops"), t.protocol)
              for t in tables1(results, truths, failed=failed,
                               ceilings=manifest.get("noise_ceiling_db", {}))]
    from .tradeoff import protocol_tables
    from .trust import trust_markdown  # misregistration sweep and hidden-layer groups

    blocks.append(protocol_tables(results, manifest))  # acquisition, thinning, estimated ceilings
    blocks.append(trust_markdown(results, manifest, truth="measured" if truth == "all" else truth))
    text = "\n\n".join(b for b in blocks if b)
    return text + ("\n\n" + "\n".join(notes) if notes else "")


def crop_note(crops: dict | None, protocol: str) -> str:
    """``; D cropped from H×W to H'×W' (the largest multiple of the scale s)`` for a caption."""
    items = [(k.split("@")[0], c) for k, c in (crops or {}).items()
             if (k.split("@", 1)[1] if "@" in k else "full") == protocol]
    return "".join(f"; {d} cropped from {c['from'][0]}×{c['from'][1]} to {c['to'][0]}×{c['to'][1]} "
                   f"{c['grid']} px (the largest multiple of the scale {c['scale']})" for d, c in items)


def _with_crop_note(text: str, crops: dict | None, protocol: str) -> str:
    note = crop_note(crops, protocol)
    if not note:
        return text
    first, _, rest = text.partition("\n")
    return first + note + "\n" + rest


# --- the transposed table --------------------------------------------------------------

def by_method_markdown(results: Results, *, metric: str = "psnr", truth: str = "all") -> str:
    """Markdown, one table per protocol: a row per column label, a column per dataset and
    truth (``metric`` as mean ± std, best in bold and second in italics by :func:`rank`),
    and the seconds per dataset.  The transposed Table I, for many methods on few datasets."""
    n_seeds = max(1, len(results.seeds))
    blocks = []
    for protocol in results.table_protocols:
        datasets = _protocol_datasets(results, protocol)
        cols = []  # (dataset, truth) with figures
        for ds in datasets:
            for t in ("measured", "clean"):
                if truth in (t, "all") and any(r["dataset"] == ds and r["protocol"] == protocol
                                               and r["truth"] == t and r["metric"] == metric
                                               for r in results.rows):
                    cols.append((ds, t))
        if not cols:
            continue
        methods = results.methods
        header = ["column", *(f"{ds} {metric_title(metric)} ({t})" for ds, t in cols),
                  *(f"{ds} s" for ds in datasets)]
        body = [[f"`{m}`"] for m in methods]
        for ds, t in cols:
            summ = results.summary(metric, truth=t, protocol=protocol)
            ss = [summ.get((ds, m)) for m in methods]
            ranked = rank([s.mean if s else math.nan for s in ss], [s.std if s else math.nan for s in ss],
                          higher_is_better(metric))
            for row, s, r in zip(body, ss, ranked):
                text = format_cell(s, metric, n_seeds)
                row.append(f"**{text}**" if r == 1 else f"_{text}_" if r == 2 else text)
        for ds in datasets:
            t = next((t for d, t in cols if d == ds), "measured")
            summ = results.summary("seconds", truth=t, protocol=protocol)
            for row, m in zip(body, methods):
                s = summ.get((ds, m))
                row.append("—" if s is None else f"{s.mean:.0f}")
        lines = [f"protocol: {protocol}", "", "| " + " | ".join(header) + " |",
                 "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
