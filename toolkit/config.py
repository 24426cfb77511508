"""What a run is asked to do: :class:`RunConfig` and the parsing of ``--set``.

Run settings decide what the run computes and writes (methods, datasets, seeds, scale,
operator, protocols, metrics…).  *Display* settings decide only what is printed at the end
and never change a file of the run directory; ``truth`` is the one display setting
:class:`RunConfig` carries (it is checked with the run settings, before anything runs, so
that a run is not wasted on a table it cannot print).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .errors import ConfigError

#: the evaluation protocols (see :mod:`maxrf_bench.runner`)
PROTOCOLS = ("full", "reduced", "acquisition", "thinning")
#: the truths a column is scored against, where a dataset has them
TRUTHS = ("measured", "clean")
#: the ``truth`` of the metrics that need none (consistency, QNR, seconds…)
TRUTHLESS = "none"
#: the fields of :class:`RunConfig` that change only what is printed, never what is written
DISPLAY_FIELDS = ("truth",)

__all__ = ["DISPLAY_FIELDS", "PROTOCOLS", "RunConfig", "TRUTHLESS", "TRUTHS", "dataset_key", "parse_sets"]


def dataset_key(dataset: str, protocol: str = "full", misregister: float | None = None) -> str:
    """The *dataset key*: a dataset under a protocol, ``D`` (full) or ``D@protocol``, with
    ``~misA`` appended for a photograph warped by ``A`` pixels RMS (``run --misregister``;
    nothing for ``None`` or 0).  It names the dataset's folders of a run directory
    (:mod:`maxrf_bench.rundir`) and its entries of the manifest."""
    key = dataset if protocol == "full" else f"{dataset}@{protocol}"
    return key + (f"~mis{float(misregister):g}" if misregister else "")


def parse_sets(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Parse ``method.key=value`` strings into ``{method: {key: value}}``."""
    from .types import parse_value

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, param = key.strip().partition(".")
        if not sep or not dot or not method or not param:
            raise ConfigError(f"--set expects METHOD.KEY=VALUE (e.g. guided.radius=2), found {item!r}")
        out.setdefault(method, {})[param] = parse_value(value)
    return out


@dataclass
class RunConfig:
    """Everything a run needs.  ``methods`` are column specs (``guided+P[radius=2]``);
    ``seeds`` (or the single ``seed``) are the method seeds; ``protocols`` ⊂ {full, reduced};
    ``fair`` adds the ``+P`` column of every method that does not project; ``force`` reruns
    finished cells; ``scheduler`` runs the cells as dask tasks (``threads``, ``processes`` or a
    ``dask.distributed`` address, see :mod:`maxrf_bench.scheduler`; ``None``: one after
    another in this process).

    Display setting (:data:`DISPLAY_FIELDS`): ``truth``, the truth the printed table shows
    (checked before anything runs; it changes no file of the run)."""

    methods: list[str]
    datasets: list[str] = field(default_factory=list)
    out: Path = Path("maxrf-results")
    scale: int | None = None
    seed: int = 0
    seeds: list[int] | None = None
    preset: str | None = None
    sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    operator: str = "blockmean"
    sigma: float = 1.0
    device: str = "auto"
    metrics: list[str] | None = None
    protocols: list[str] = field(default_factory=lambda: ["full"])
    fair: bool = False
    force: bool = False
    truth: str = "measured"
    command: list[str] = field(default_factory=lambda: list(sys.argv))
    scheduler: str | None = None
    #: ``--protocol acquisition``: relative scan times (``"1,1/4,1/16,1/64"`` by default) and
    #: the seed of the synthetic LR scans' noise and of the thinning split (maxrf_bench.acquisition)
    scan_times: str | None = None
    noise_seed: int = 0
    #: ``--acquire``: the faster scan is a coarser step (``coarse``) or the HR step with a
    #: shorter dwell, binned for the methods (``dwell``, ours; ``+F`` needs it)
    acquire: str = "coarse"
    #: misregistration sweep: RMS amplitudes (HR pixels) of the photograph's warp, and the
    #: seed of the displacement field (:mod:`maxrf_bench.misregister`); ``None``: no sweep
    misregister: list[float] | None = None
    misregister_seed: int = 0

    @property
    def seed_list(self) -> list[int]:
        return list(self.seeds) if self.seeds is not None else [int(self.seed)]

