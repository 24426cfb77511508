"""Reading the results of a run: ``results.csv`` in long form and summaries over seeds
(the maps and inputs are read by :mod:`maxrf_bench.rundir`).

``results.csv`` columns: ``dataset, protocol, method, seed, truth, element, metric, value,
misregister``

* ``protocol``: ``full`` (scored at the scan's own resolution) or ``reduced`` (Wald's
  reduced-resolution protocol, scored against the measured LR maps);
* ``method``: the column label (``guided+P[radius=2]``, see :mod:`maxrf_bench.variants`);
* ``seed``: the method's seed (a deterministic method runs once, with the first seed);
* ``truth``: ``measured`` (the scan's maps), ``clean`` (the simulator's noise-free
  ``maps_clean``) or ``none`` (metrics that need no truth: consistency, QNR, seconds…);
* ``misregister``: the RMS warp (HR pixels) of the photograph the methods saw, ``run
  --misregister`` (:mod:`maxrf_bench.misregister`); empty when no sweep was asked for.
  Files without the column (older runs) read as empty.

:class:`Results` keeps every row in ``all_rows``; ``rows`` (what Table I and the other
tables read) holds only the rows of the unwarped photograph: ``misregister`` empty or 0,
or, for a sweep without 0, its smallest amplitude.  :meth:`Results.misregistration`
pivots the sweep.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .config import TRUTHLESS
from .errors import StoreError

RESULT_COLUMNS = ("dataset", "protocol", "method", "seed", "truth", "element", "metric", "value",
                  "scan_time", "misregister")
#: columns appended after ``value`` by later versions; a file without them reads as empty
OPTIONAL_COLUMNS = ("scan_time", "misregister")
#: columns a results table must have
REQUIRED_COLUMNS = tuple(c for c in RESULT_COLUMNS if c not in OPTIONAL_COLUMNS)
#: protocols with one Table I each (acquisition and thinning have their own tables)
TABLE_PROTOCOLS = ("full", "reduced")


@dataclass(frozen=True)
class Summary:
    """A column's figure on a dataset over its seeds: mean, sample standard deviation (0 for
    one run), count."""

    mean: float
    std: float
    n: int
    seeds: tuple[int, ...] = ()

    @classmethod
    def of(cls, values: list[float], seeds: list[int] | None = None) -> "Summary":
        a = np.asarray(values, dtype=float)
        if a.size == 0:
            return cls(math.nan, math.nan, 0)
        std = float(a.std(ddof=1)) if a.size > 1 else 0.0
        return cls(float(a.mean()), std, int(a.size), tuple(seeds or ()))


@dataclass
class Results:
    """The rows of ``results.csv`` with helpers to pivot them."""

    rows: list[dict]
    #: labels to show as columns although no row has them (cells that failed)
    extra_methods: list[str] = field(default_factory=list)
    #: every row, the misregistered photographs' too (``rows``: the unwarped ones only)
    all_rows: list[dict] = field(default_factory=list)

    def __post_init__(self):
        if not self.all_rows:
            self.all_rows = list(self.rows)
        for r in self.all_rows:
            r.setdefault("misregister", "")
        amps = {r["misregister"] for r in self.all_rows}
        if amps - {"", "0"}:
            base = {"", "0"} & amps or {min(amps - {""}, key=float)}
            self.rows = [r for r in self.all_rows if r["misregister"] in base]

    @property
    def amplitudes(self) -> list[float]:
        """The misregistration amplitudes of the run (HR pixels), ascending; [] without a sweep."""
        return sorted({float(r["misregister"]) for r in self.all_rows if r["misregister"] != ""})

    def misregistration(self, metric: str = "psnr", truth: str = "measured", protocol: str = "full",
                        element: str = "all") -> dict[tuple[str, str, float], Summary]:
        """``{(dataset, label, amplitude): Summary}`` of one metric over the seeds, for every
        amplitude of the sweep."""
        truth = self._truth_for(metric, truth)
        acc: dict[tuple[str, str, float], tuple[list, list]] = {}
        for r in self.all_rows:
            if (r["misregister"] != "" and r["metric"] == metric and r["element"] == element
                    and r["truth"] == truth and r["protocol"] == protocol):
                vals, seeds = acc.setdefault((r["dataset"], r["method"], float(r["misregister"])),
                                             ([], []))
                vals.append(r["value"])
                seeds.append(r["seed"])
        return {k: Summary.of(v, s) for k, (v, s) in acc.items()}

    def _truth_for(self, metric: str, truth: str | None) -> str | None:
        # metrics that need no truth are stored under truth 'none', whatever table is asked for
        if truth is not None and metric in self._truthless:
            return TRUTHLESS
        return truth

    @cached_property
    def _truthless(self) -> set[str]:
        return {r["metric"] for r in self.rows if r["truth"] == TRUTHLESS}

    def _match(self, dataset, method, metric, element, truth, protocol, seed=None):
        for r in self.rows:
            if (r["dataset"] == dataset and r["method"] == method and r["metric"] == metric
                    and r["element"] == element and (protocol is None or r["protocol"] == protocol)
                    and (truth is None or r["truth"] == truth)
                    and (seed is None or r["seed"] == seed)):
                yield r

    def values(self, dataset: str, method: str, metric: str, element: str = "all", *,
               truth: str | None = "measured", protocol: str | None = "full") -> list[float]:
        """The value of every seed (``truth``/``protocol`` ``None`` = any)."""
        truth = self._truth_for(metric, truth)
        return [r["value"] for r in self._match(dataset, method, metric, element, truth, protocol)]

    def value(self, dataset: str, method: str, metric: str, element: str = "all", *,
              truth: str | None = "measured", protocol: str | None = "full",
              seed: int | None = None) -> float:
        """One value: the mean over seeds (or the given ``seed``'s).  ``KeyError`` if absent."""
        truth = self._truth_for(metric, truth)
        vals = [r["value"] for r in self._match(dataset, method, metric, element, truth, protocol, seed)]
        if not vals:
            raise KeyError((dataset, method, metric, element, truth, protocol, seed))
        return float(np.mean(vals))

    def get(self, dataset: str, method: str, metric: str, element: str = "all",
            default: float = float("nan"), **kw) -> float:
        """Like :meth:`value`, with ``default`` (NaN) for a missing cell."""
        try:
            return self.value(dataset, method, metric, element, **kw)
        except KeyError:
            return default

    def summary(self, metric: str = "psnr", truth: str = "measured", protocol: str = "full",
                element: str = "all") -> dict[tuple[str, str], Summary]:
        """``{(dataset, label): Summary}`` of one metric over the seeds."""
        truth = self._truth_for(metric, truth)
        acc: dict[tuple[str, str], tuple[list, list]] = {}
        for r in self.rows:
            if (r["metric"] == metric and r["element"] == element and r["truth"] == truth
                    and r["protocol"] == protocol):
                vals, seeds = acc.setdefault((r["dataset"], r["method"]), ([], []))
                vals.append(r["value"])
                seeds.append(r["seed"])
        return {k: Summary.of(v, s) for k, (v, s) in acc.items()}

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(r["dataset"] for r in self.rows))

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys([*(r["method"] for r in self.rows), *self.extra_methods]))

    @property
    def protocols(self) -> list[str]:
        return list(dict.fromkeys(r["protocol"] for r in self.rows))

    @property
    def table_protocols(self) -> list[str]:
        """The protocols scored in a Table I (``full``, ``reduced``)."""
        return [p for p in self.protocols if p in TABLE_PROTOCOLS]

    @property
    def seeds(self) -> list[int]:
        return sorted({r["seed"] for r in self.rows})

    def truths(self, dataset: str | None = None) -> list[str]:
        """Truths with rows (``measured``, ``clean``), for one dataset or any."""
        return [t for t in ("measured", "clean")
                if any(r["truth"] == t and (dataset is None or r["dataset"] == dataset)
                       for r in self.rows)]

    def metrics(self) -> list[str]:
        return list(dict.fromkeys(r["metric"] for r in self.rows))


def read_results(out: str | Path) -> Results:
    """Read ``out/results.csv`` (written by ``maxrf-bench run``)."""
    from .rundir import RunDir

    path = RunDir(out).results
    if not path.exists():
        raise StoreError(f"no results in {str(out)!r}: expected {path} (written by maxrf-bench run)")
    rows = []
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = set(REQUIRED_COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise StoreError(f"{path} is not a results table of this version: expected columns "
                                 f"{', '.join(RESULT_COLUMNS)}, missing {', '.join(sorted(missing))}")
            for r in reader:
                line = reader.line_num
                # every field of the header, the optional columns too when the header has them
                short = [k for k in reader.fieldnames if r.get(k) is None]
                if short or None in r:
                    raise StoreError(f"{path} is corrupt: line {line} has {len(r) - (None in r)} "
                                     f"fields, expected {len(reader.fieldnames)} (field "
                                     f"{(short or ['(extra)'])[0]!r}; a cut-short or hand-edited file)")
                for key, conv in (("value", float), ("seed", int)):
                    try:
                        r[key] = conv(r[key])
                    except ValueError:
                        raise StoreError(f"{path} is corrupt: line {line}, field {key!r}: expected "
                                         f"{'a number' if conv is float else 'an integer'}, found "
                                         f"{r[key]!r:.40}") from None
                for col in OPTIONAL_COLUMNS:  # empty, or a number (scan time, amplitude)
                    r[col] = r.get(col) or ""
                    try:
                        if r[col]:
                            float(r[col])
                    except ValueError:
                        raise StoreError(f"{path} is corrupt: line {line}, field {col!r}: expected "
                                         f"a number or nothing, found {r[col]!r:.40}") from None
                rows.append(r)
    except UnicodeDecodeError as exc:
        raise StoreError(f"{path} is corrupt: {exc}") from None
    except csv.Error as exc:
        raise StoreError(f"{path} is corrupt: {exc}") from None
    return Results(rows)
