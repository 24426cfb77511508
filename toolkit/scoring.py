"""Scoring a method's output: the checks every raw output passes, the post-processing of
each variant (:func:`maxrf_bench.postprocess`) and the metrics, the same way for every
method, in the runner and in :mod:`maxrf_bench.reproduce`."""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import xarray as xr

from .plugins import get_metrics, get_registry
from .config import TRUTHLESS
from .types import Method, MethodInputs, call_with_params
from .variants import postprocess_prepared

if TYPE_CHECKING:
    from .prepare import Prepared

__all__ = ["check_output", "evaluate", "psnr_db", "run_method", "score_variants"]


def check_output(sr: Any, prepared: Prepared) -> np.ndarray:
    """A method's raw output as float32 ``(element, y, x)``; ``ValueError`` for another shape
    or a non-finite value."""
    sr = np.asarray(sr.values if isinstance(sr, xr.DataArray) else sr, dtype=np.float32)
    expected = (len(prepared.elements), *prepared.rgb.shape[-2:])
    if sr.shape != expected:
        raise ValueError(f"method returned shape {sr.shape}, expected {expected}")
    if not np.isfinite(sr).all():
        raise ValueError(f"method returned {int((~np.isfinite(sr)).sum())} non-finite values")
    return sr


def run_method(method: Method, inputs: MethodInputs, params: Mapping[str, Any],
               prepared: Prepared) -> np.ndarray:
    """Run ``method`` with ``params`` on ``inputs`` and :func:`check_output` its result."""
    return check_output(call_with_params(method.run, inputs, params), prepared)


def score_variants(sr: np.ndarray, prepared: Prepared, variants: list[str],
                   metric_names: list[str] | None = None, errors: list[str] | None = None) -> dict:
    """``{variant: evaluate(postprocess(sr, variant))}``: the metrics of every variant of one
    raw output."""
    return {v: evaluate(postprocess_prepared(sr, v, prepared), prepared, metric_names, errors)
            for v in variants}


def evaluate(sr: np.ndarray, prepared: Prepared, metric_names: list[str] | None = None,
             errors: list[str] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Every registered metric (or ``metric_names``) per element and overall (``all``),
    per truth: ``{truth: {metric: {element: value}}}`` with truth ``measured``, ``clean``
    (where the dataset has them) and ``none`` for the metrics that need no truth.

    ``errors``: when a list, a metric that raises is left out and its failure (metric and
    plugin name, exception) appended there instead of raised, so one broken metric plugin
    does not lose the other metrics of a run."""
    metrics = get_metrics()
    names = metric_names or sorted(metrics)
    out: dict[str, dict[str, dict[str, float]]] = {}
    lr = prepared.maps_lr.values
    rgb = prepared.rgb.values
    for name in names:
        metric = metrics[name]
        refs = prepared.truths.items() if metric.needs_truth else [(TRUTHLESS, None)]
        for truth_name, truth in refs:
            kw = {"rgb": rgb} if _accepts(metric.compute, "rgb") else {}
            from .cellguard import InterruptWatch, failure_text, is_method_failure

            interrupts = InterruptWatch()  # a metric's sys.exit fails that metric only
            try:
                with interrupts:
                    per, overall = metric.compute(sr, truth, lr, prepared.operator, **kw)
                per = np.asarray(per, dtype=float).reshape(-1)
                if per.shape != (len(prepared.elements),):
                    raise ValueError(f"metric returned {per.size} per-element values, expected "
                                     f"{len(prepared.elements)} (one per element line)")
                row = {el: float(v) for el, v in zip(prepared.elements, per)}
                row["all"] = float(overall)
            except BaseException as exc:  # noqa: BLE001 - reported, see ``errors``
                if errors is None or not is_method_failure(exc, interrupts):
                    raise
                try:
                    owner = get_registry().owner_of("metrics", name)
                except KeyError:
                    owner = "?"
                text = f"metric {name!r} (plugin {owner!r}) failed: {failure_text(exc)}"
                if text not in errors:
                    errors.append(text)
                continue
            out.setdefault(truth_name, {})[name] = row
    if getattr(prepared, "protocol", "full") == "thinning":  # the estimated clean-truth scores (maxrf_bench.thinning)
        from .thinning import estimated_metrics

        out.update(estimated_metrics(sr, prepared))
    return out


def protocol_manifest(prepared: list, cfg) -> dict:
    """The manifest entries of the acquisition and thinning protocols (scan times, the HR
    scan's reference line, the noise seed), and the crops of scans cut to the scale."""
    from .acquisition import manifest_entry

    out = manifest_entry(prepared, cfg.noise_seed)
    if any(p.protocol == "thinning" for p in prepared):
        out["thinning"] = {"noise_seed": cfg.noise_seed}
    crops = {p.key: p.crop for p in prepared if getattr(p, "crop", None)}
    if crops:
        out["crops"] = crops
    estimated = {p.key: noise_ceiling_estimate(p) for p in prepared
                 if p.protocol == "full" and p.truth is not None and p.truth_clean is None}
    if estimated:
        out["noise_ceiling_estimated"] = estimated
    return out


def noise_ceiling_estimate(prep: Prepared) -> dict:
    """The measured truth's noise ceiling where there is no clean truth: from the counts'
    own Poisson variance for integer count maps, else a documented blind estimator
    (:func:`maxrf_bench.thinning.estimated_noise_ceiling`)."""
    maps = np.asarray(prep.scan["maps"].values, np.float64)
    if np.all(maps >= 0) and np.all(maps == np.round(maps)):
        mse = float(np.mean(maps / prep.span[:, None, None] ** 2))
        return {"psnr": -10 * np.log10(mse) if mse > 0 else float("inf"),
                "estimator": "Poisson: the variance of a raw count is the count (integer maps); "
                             "assumes pure counting noise"}
    from .thinning import estimated_noise_ceiling

    return estimated_noise_ceiling(prep.truth)




def _accepts(func: Callable, name: str) -> bool:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of ``a`` against ``b`` on a [0, 1] scale (``inf`` when equal): the noise
    ceiling of a dataset is that of its measured truth against its clean one."""
    rmse = float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))
    return float("inf") if rmse == 0 else -20.0 * np.log10(rmse)
