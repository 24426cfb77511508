"""Method specs, cell labels and the post-processing every method may get from the host.

A *method spec* on the command line names a registered method, optionally a
post-processing variant and parameters::

    guided                 the method as published
    guided+P               followed by the host's exact projection (paper Eq. 10)
    guided+C               clipped to the normalised range [0, 1]
    guided+PC              projected, then clipped
    guided+W               the noise-aware (Wiener-weighted) projection, our addition
                           (:mod:`maxrf_bench.noise`)
    guided+F               fused with the short-dwell HR-step scan whose block means the
                           method was given (``--acquire dwell`` or a store's ``maps_dwell``),
                           our addition
    guided+P[radius=2]     with a parameter set for this column only
    proposed[preset=ctx]   with the method's preset ``ctx`` for this column only (the
                           label shows the parameters it sets: ``proposed[kernel=5]``)

The *label* of a cell is the spec written back in a canonical form: the variant, and
every parameter whose value differs from the method's resolved defaults (defaults, then the
run's preset), sorted by name.  Two columns of one run therefore never share a label.

The post-processing is done here, once, for every method alike: a method never
implements its own projection or clipping switch.  A method that already projects
declares it (``Method(projects=...)``) and ``+P`` on it is refused.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .errors import ConfigError
from .types import Method, parse_value

#: variant suffix → (project, clip); projection comes first, then clipping.  ``W``: the
#: noise-aware projection (``project`` = ``"weighted"``, see :mod:`maxrf_bench.noise`).
VARIANTS = {"": (False, False), "P": (True, False), "C": (False, True), "PC": (True, True),
            "W": ("weighted", False), "F": ("fuse", False)}
#: the variants that need a short-dwell HR-step scan beside the LR maps (``--acquire dwell``,
#: a store's ``maps_dwell``)
DWELL_VARIANTS = tuple(v for v, (project, _) in VARIANTS.items() if project == "fuse")

#: The version of a variant's post-processing, where it is not 1.  A finished cell scored under
#: another version has that variant rescored from its stored raw output, and the column's
#: maps over seeds are rewritten, the next time a run reuses it (nothing is retrained).
#: ``W`` 2: the LR noise variance at ``U(Ŷ)``, not at the measured counts (maxrf_bench.noise).
#: ``F`` 2: the fusion in the Anscombe domain of the scan's counts (maxrf_infer.fuse).
VARIANT_VERSIONS = {"W": 2, "F": 2}


def variant_version(variant: str) -> int:
    """The version of ``variant``'s post-processing (:data:`VARIANT_VERSIONS`, else 1)."""
    return VARIANT_VERSIONS.get(variant, 1)

_SPEC = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_.-]*)(?:\+(?P<variant>[A-Za-z]*))?"
                   r"(?:\[(?P<params>[^\[\]]*)\])?$")


@dataclass(frozen=True)
class MethodSpec:
    """One column of the comparison: a method, a variant and parameter overrides."""

    name: str
    variant: str = ""
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def project(self) -> bool:
        return VARIANTS[self.variant][0]

    @property
    def clip(self) -> bool:
        return VARIANTS[self.variant][1]


def split_specs(text: str | None) -> list[str]:
    """Split a ``--methods`` value on commas that are not inside ``[...]``."""
    if not text:
        return []
    out, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return [s for s in out if s]


def parse_spec(text: str) -> MethodSpec:
    """``NAME[+P|+C|+PC][[key=value,...]]`` → :class:`MethodSpec` (no registry lookup)."""
    m = _SPEC.match(text.strip())
    if not m:
        raise ConfigError(f"a method must be written NAME, NAME+P, NAME+C, NAME+PC, optionally "
                          f"followed by [key=value,...], found {text!r}")
    variant = m.group("variant")
    if variant is not None and (variant == "" or variant.upper() not in VARIANTS):
        raise ConfigError(f"unknown variant '+{variant or ''}' in {text!r}; expected +P (the host's "
                          f"exact projection), +C (clipped to [0, 1]), +PC (both) or +W (the "
                          f"noise-aware projection)")
    overrides: dict[str, Any] = {}
    if m.group("params") is not None:
        for item in m.group("params").split(","):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"parameters in [...] must be key=value, found {item!r} in {text!r}")
            overrides[key.strip()] = parse_value(value.strip())
    return MethodSpec(m.group("name"), (variant or "").upper(), overrides)


def check_variant(spec: MethodSpec, method: Method, params: Mapping[str, Any]) -> None:
    """Refuse ``+P`` (and ``+W``) on a method whose output is already projected; ``+F`` fuses
    any output with the short-dwell scan, projected or not."""
    if spec.project in (True, "weighted") and method.projects_with(params):
        raise ConfigError(f"{method.name!r} already ends with the exact projection (it declares "
                          f"projects=True), so '{method.name}+{spec.variant}' would project twice; "
                          f"use {method.name!r}" + (" or '+C'" if spec.variant == "PC" else ""))


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and ("/" in value or "\\" in value):
        return re.split(r"[/\\]", value.rstrip("/\\"))[-1]  # a path: its file name
    return str(value)


def label(spec: MethodSpec, params: Mapping[str, Any], baseline: Mapping[str, Any],
          *, variant: bool = True) -> str:
    """The cell label: ``name[+variant][k=v,...]`` with the parameters that differ from
    ``baseline`` (the method's defaults after the run's preset)."""
    changed = [k for k in sorted(params) if k in baseline and params[k] != baseline[k]]
    text = spec.name + (f"+{spec.variant}" if variant and spec.variant else "")
    if changed:
        text += "[" + ",".join(f"{k}={_format_value(params[k])}" for k in changed) + "]"
    return text


def preset_alias(method: Method, variant: str, params: Mapping[str, Any],
                 run_preset: str | None) -> str | None:
    """The shortest way to write a column with one of the method's presets: the label of
    ``params`` against the preset that explains most of them (``proposed+W[preset=ctx,
    projection=False]`` for ``proposed+W[kernel=5,projection=False,register=lr]``), or
    ``None`` when no preset says it in fewer parameters than the label (against the run's
    preset) does."""
    def extras(preset):
        base = method.params(preset)
        return [k for k in sorted(params) if k in base and params[k] != base[k]]

    own = extras(run_preset)
    best = min((p for p in method.presets if p != run_preset), key=lambda p: len(extras(p)),
               default=None)
    if best is None or len(extras(best)) >= len(own):
        return None
    text = method.name + (f"+{variant}" if variant else "")
    return text + "[" + ",".join([f"preset={best}"] + [f"{k}={_format_value(params[k])}"
                                                      for k in extras(best)]) + "]"


_SAFE = re.compile(r"[^A-Za-z0-9._+=,@\[\]-]")


def label_dirname(text: str) -> str:
    """A file-system-safe directory name for a label (no separators, no ``..``)."""
    safe = _SAFE.sub("_", text).strip(".") or "_"
    if safe != text or len(safe) > 100:
        digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        safe = f"{safe[:90]}-{digest}"
    return safe


def postprocess(sr: np.ndarray, spec_or_variant: MethodSpec | str, operator, maps_lr: np.ndarray,
                noise_var=None, dwell=None) -> np.ndarray:
    """Apply a variant to a method's normalised output ``(element, y, x)``.

    ``+P``: ``operator.project(sr, maps_lr)``, the exact orthogonal projection of the run's
    operator (Eq. 10 for the block mean; a Gram solve for the others);
    ``+C``: ``clip(sr, 0, 1)``; ``+PC``: projection, then clipping (so the result stays in
    range; it is then consistent up to what the clipping removed); ``+W``: the noise-aware
    projection with the LR noise variance ``noise_var`` (an array, or a callable that gives it
    at the normalised LR maps it is passed, called only then;
    :func:`maxrf_bench.noise.weighted_projection`); ``+F``: the raw output fused with the
    short-dwell HR-step scan by ``dwell``, a callable ``sr → fused`` (``None``: no such scan;
    :func:`maxrf_bench.noise.fuse_prepared`).
    """
    variant = spec_or_variant.variant if isinstance(spec_or_variant, MethodSpec) else spec_or_variant
    project, clip = VARIANTS[variant]
    out = np.asarray(sr, dtype=np.float32)
    if project == "fuse":
        if dwell is None:
            raise ConfigError("+F fuses a method's output with a short-dwell HR-step scan, which "
                              "--protocol acquisition --acquire dwell makes and a scan imported "
                              "with --short-dwell carries; found none")
        out = np.asarray(dwell(out), dtype=np.float32)
    elif project == "weighted":
        from .noise import weighted_projection

        out = np.asarray(weighted_projection(out, operator, maps_lr, noise_var), dtype=np.float32)
    elif project:
        out = np.asarray(operator.project(out.astype(np.float64), np.asarray(maps_lr, np.float64)),
                         dtype=np.float32)
    if clip:
        out = np.clip(out, 0.0, 1.0)
    return out


def postprocess_prepared(sr: np.ndarray, variant: str, prep) -> np.ndarray:
    """:func:`postprocess` with what a prepared dataset gives: its operator, LR maps, the LR
    noise variance for ``+W`` and the short-dwell scan for ``+F`` (each computed only when
    the variant calls for it)."""
    from functools import partial

    from .noise import fuse_prepared, lr_noise_variance

    return postprocess(sr, variant, prep.operator, prep.maps_lr.values, partial(lr_noise_variance, prep),
                       None if prep.maps_dwell is None else partial(fuse_prepared, prep))

