"""The checks every entry point makes on a scan's values and attributes, in one place.

``maxrf-bench run``, ``import``, the Python API (``maxrf_bench.validate_scan``) and
``maxrf-infer`` all refuse the same things with the same words: counts that are not finite
or negative, a photograph outside [0, 1], non-numeric arrays, and malformed attributes
(``pixel_size_mm``, ``scale``).  The runtime cannot import the host, so the checks live here
and the host calls them.  Each returns the problems found (empty: none), so a caller can
list every problem at once.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["attr_problems", "value_problems"]


def value_problems(var: str, a: np.ndarray, locate: Callable[[np.ndarray], str] | None = None
                   ) -> list[str]:
    """Problems of the values of variable ``var``: the photograph ``rgb`` must lie in [0, 1],
    every other variable is counts (finite, non-negative).  ``locate(mask)`` says where the
    first offending value is (e.g. ``element=Pb_L, y=3, x=4``)."""
    a = np.asarray(a)
    where = locate or (lambda mask: ", ".join(f"index {int(i[0])}" for i in np.nonzero(mask)))
    if np.iscomplexobj(a):
        return [f"'{var}' must be real numbers, found dtype {a.dtype}"]
    if not np.issubdtype(a.dtype, np.number):
        return [f"'{var}' must be numeric, found dtype {a.dtype}"]
    if a.size == 0:
        return []
    finite = np.isfinite(a)
    if not finite.all():
        bad = int((~finite).sum())
        return [f"'{var}' must be finite, found {bad} NaN/Inf values (first at {where(~finite)})"]
    if var != "rgb":
        negative = a < 0
        if negative.any():
            return [f"'{var}' must be non-negative counts, found {int(negative.sum())} negative values "
                    f"(min {float(a.min()):.4g} at {where(negative)})"]
        return []
    lo, hi = a.min(), a.max()
    if lo < 0 or hi > 1:
        hint = ""
        if np.issubdtype(a.dtype, np.integer):  # an 8/16-bit photograph written as it is
            hint = (f" of dtype {a.dtype} (divide an integer photograph by its largest value, "
                    f"e.g. 255, or build the scan with maxrf_bench.make_scan, which does)")
        return [f"'rgb' must lie in [0, 1], found range [{lo:.4g}, {hi:.4g}]{hint}"]
    return []


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray) and value.size == 1 and np.issubdtype(value.dtype, np.number):
        return float(value.reshape(()))
    return None


def scanner_noise(attrs: Mapping[str, Any]) -> tuple[float, float]:
    """The scanner noise beyond Poisson a scan records in its attributes: the multiplicative
    gain excess ``scanner_gain_cv`` and the row jitter ``scanner_jitter_px`` (0 where none)."""
    return (float(attrs.get("scanner_gain_cv", 0.0) or 0.0),
            float(attrs.get("scanner_jitter_px", 0.0) or 0.0))


def attr_problems(attrs: Mapping[str, Any]) -> list[str]:
    """Problems of a scan's attributes: ``pixel_size_mm`` a positive finite number (mm),
    ``scale`` a positive integer, ``scanner_gain_cv`` a finite number ≥ 0, ``schema_version``
    an integer."""
    problems = []
    if "pixel_size_mm" in attrs and attrs["pixel_size_mm"] is not None:
        v = _number(attrs["pixel_size_mm"])
        if v is None or not math.isfinite(v) or v <= 0:
            problems.append(f"attribute pixel_size_mm must be a positive number of millimetres, "
                            f"found {attrs['pixel_size_mm']!r}")
    if "scale" in attrs and attrs["scale"] is not None:
        v = _number(attrs["scale"])
        if v is None or not math.isfinite(v) or v < 1 or v != int(v):
            problems.append(f"attribute scale must be a positive integer, found {attrs['scale']!r}")
    if "scanner_gain_cv" in attrs and attrs["scanner_gain_cv"] is not None:
        v = _number(attrs["scanner_gain_cv"])
        if v is None or not math.isfinite(v) or v < 0:
            problems.append(f"attribute scanner_gain_cv (the scanner's multiplicative noise excess) "
                            f"must be a number ≥ 0, found {attrs['scanner_gain_cv']!r}")
    if "schema_version" in attrs:
        v = _number(attrs["schema_version"])
        if v is None or v != int(v):
            problems.append(f"attribute schema_version must be an integer, found "
                            f"{attrs['schema_version']!r}")
    return problems
