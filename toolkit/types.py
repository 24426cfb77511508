"""The items plugins register: :class:`Method`, :class:`Dataset`, :class:`Metric`.

They are plain dataclasses, so a plugin needs nothing of the host but these classes and
:data:`maxrf_bench.hookimpl`.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import numpy as np
import xarray as xr

from .operators import Operator


class Progress(Protocol):
    """Progress callback handed to methods: ``progress(done, total, message="")``.

    ``done`` and ``total`` are in the method's own units (iterations, outer loops…);
    ``message`` is a short status such as current losses.  Cheap to call; the host
    throttles what it prints.
    """

    def __call__(self, done: int, total: int, message: str = "") -> None: ...


def _no_progress(done: int, total: int, message: str = "") -> None:
    return None


@dataclass
class MethodInputs:
    """What a method sees: never the ground truth.

    Attributes
    ----------
    maps_lr:
        ``(element, y_lr, x_lr)`` float32 low-resolution maps, normalised per element
        (ground truth mapped to [0, 1] when benchmarking).
    rgb:
        ``(band, y, x)`` float32 photograph in [0, 1], band = R, G, B, on the HR grid.
    operator:
        The forward model ``U`` (HR → LR) with its exact projection.
    seed:
        Seed for every random choice the method makes.
    progress:
        Progress callback, see :class:`Progress`.
    workdir:
        A directory private to this (dataset, method) cell, kept after the run:
        checkpoints and trained models go here, so an interrupted run resumes and a
        trained generator can be exported.  ``None`` when the caller keeps nothing.
    device:
        ``"auto"``, ``"cpu"`` or ``"cuda"``; methods that cannot use a GPU ignore it.
    noise_var:
        ``(element, y_lr, x_lr)`` variance of the LR maps' counting noise per LR pixel, in
        their normalised units, where the host knows it from the LR counts (``--protocol
        acquisition``: ``maxrf_bench.noise.lr_noise_variance``); ``None`` otherwise.  Derived
        from the LR maps alone, never from a truth.
    """

    maps_lr: xr.DataArray
    rgb: xr.DataArray
    operator: Operator
    seed: int = 0
    progress: Callable[..., None] = _no_progress
    workdir: Path | None = None
    device: str = "auto"
    noise_var: np.ndarray | None = None

    @property
    def elements(self) -> list[str]:
        return [str(e) for e in self.maps_lr["element"].values]

    @property
    def hr_shape(self) -> tuple[int, int]:
        return (int(self.rgb.sizes["y"]), int(self.rgb.sizes["x"]))

    def as_hr(self, maps: np.ndarray, name: str = "maps") -> xr.DataArray:
        """Wrap an ``(element, y, x)`` array in the HR coordinates of this input."""
        maps = np.asarray(maps, dtype=np.float32)
        expected = (self.maps_lr.sizes["element"], *self.hr_shape)
        if maps.shape != expected:
            raise ValueError(f"method output has shape {maps.shape}, expected {expected}")
        return xr.DataArray(
            maps,
            dims=("element", "y", "x"),
            coords={"element": self.maps_lr["element"], "y": self.rgb["y"], "x": self.rgb["x"]},
            name=name,
        )


@dataclass
class Method:
    """A super-resolution method.

    ``run(inputs: MethodInputs, **params)`` returns the HR maps, ``(element, y, x)``, as a
    numpy array or :class:`xarray.DataArray`, in the normalised units of ``inputs.maps_lr``.

    ``defaults`` lists every parameter with its default value (the values ``run`` gets
    when nothing is set); ``presets`` maps a preset name (``paper``, ``fast``…) to the
    parameters it overrides.  ``--set name.key=value`` may set only keys of ``defaults``.

    ``export`` (optional) writes an ONNX model of what ``run`` trained:
    ``export(workdir, path, metadata)`` where ``workdir`` is the cell's directory.

    ``projects``: the output already satisfies ``U(output) = maps_lr`` exactly (the method
    ends with the projection of paper Eq. 10, as ``proposed`` does).  The host then refuses
    the ``+P`` variant instead of projecting twice.  A bool, or a function of the resolved
    parameters (``lambda p: p["projection"]``) for a method where a parameter decides.

    ``deterministic``: the output does not depend on ``inputs.seed``.  With several seeds
    the host runs such a method once and reports a spread of 0.

    ``check`` (optional): ``check(params, scale)`` is called for every scale of the run's
    datasets before anything is written or run; it raises a
    :class:`maxrf_bench.ConfigError` for parameters that cannot work (a missing weights
    file, say), so a grid does not stop hours in.

    ``reference``: the paper the method comes from and how faithful this implementation is
    to it (e.g. "checked against the reference code at commit X: Δ = 0.01 dB", or
    "reconstruction: no public code"); ``maxrf-bench info`` prints it.

    ``overrides`` (optional): ``{parameter: [parameters it overrides]}``.  While the first
    is set (any value but ``None`` or ``False``) the listed ones are not used, so a
    ``--set`` of one of them is refused, naming the parameter that wins (``proposed``:
    ``{"adv_calibration": ["alpha2"]}``: the calibrated stage sets α2 itself).

    ``needs`` (optional): what the method needs beyond the core install, for ``info`` and
    the docs: ``"weights file (--set NAME.weights=PATH)"``, ``"extra .[sisr]"``…

    ``cost`` (optional): a rough wall time in seconds of one cell on a 512² scan of 21
    elements (2 threads), or a function of the resolved parameters giving it.  Only the
    order of a grid's cells on a cluster uses it (the longest first, so the last cell to
    start is a short one); recorded times of the run's finished cells take precedence.

    A parameter's type is that of ``run``'s annotation where it has one (``detail: float``
    accepts ``detail=1`` and ``detail=0.5`` alike), else that of its default.
    """

    name: str
    run: Callable[..., Any]
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    reference: str = ""
    export: Callable[..., Any] | None = None
    uses_rgb: bool = True
    projects: bool | Callable[[Mapping[str, Any]], bool] = False
    deterministic: bool = False
    check: Callable[[Mapping[str, Any], int], None] | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    needs: str = ""
    cost: float | Callable[[Mapping[str, Any]], float] | None = None

    def __post_init__(self) -> None:
        _check_name("method", self.name)
        for preset, values in self.presets.items():
            unknown = set(values) - set(self.defaults)
            if unknown:
                raise ValueError(
                    f"method {self.name!r} preset {preset!r} sets unknown parameters "
                    f"{sorted(unknown)}; parameters are {sorted(self.defaults)}"
                )
        self.overrides = {k: [v] if isinstance(v, str) else list(v)
                          for k, v in dict(self.overrides).items()}
        for winner, losers in self.overrides.items():
            unknown = sorted({winner, *losers} - set(self.defaults))
            if unknown:
                raise ValueError(f"method {self.name!r} overrides names unknown parameters "
                                 f"{unknown}; parameters are {sorted(self.defaults)}")

    def param_types(self) -> dict[str, type | None]:
        """``{parameter: type}``: ``run``'s annotation where it names bool, int, float or str
        (optionally ``| None``), else the type of the default (``None``: any value)."""
        hints = _annotations(self.run)
        out = {}
        for key, default in self.defaults.items():
            out[key] = hints.get(key) or (None if default is None else type(default))
        return out

    def overridden_by(self, params: Mapping[str, Any]) -> dict[str, str]:
        """``{parameter: the parameter that overrides it}`` for these resolved parameters."""
        out = {}
        for winner, losers in self.overrides.items():
            if params.get(winner) is not None and params.get(winner) is not False:
                for loser in losers:
                    out.setdefault(loser, winner)
        return out

    def projects_with(self, params: Mapping[str, Any]) -> bool:
        """Whether the output with these (resolved) parameters is already projected."""
        return bool(self.projects(params) if callable(self.projects) else self.projects)

    def params(self, preset: str | None = None, overrides: Mapping[str, Any] | None = None) -> dict:
        """Resolve parameters: defaults, then the preset (if the method has it), then overrides.

        An override ``preset=NAME`` (``proposed[preset=ctx]``) replaces the run's preset for
        this method; the method must have that preset."""
        from .errors import ConfigError

        overrides = dict(overrides or {})
        if "preset" in overrides and "preset" not in self.defaults:
            preset = str(overrides.pop("preset"))
            if preset not in self.presets:
                raise ConfigError(f"method {self.name!r} has no preset {preset!r}; expected one "
                                  f"of: {', '.join(sorted(self.presets)) or '(none)'}")
        params = dict(self.defaults)
        if preset is not None and preset in self.presets:
            params.update(self.presets[preset])
        for key, value in (overrides or {}).items():
            if key not in self.defaults:
                known = ", ".join(sorted(self.defaults)) or "(none)"
                raise ConfigError(
                    f"method {self.name!r} has no parameter {key!r}; expected one of: {known}"
                )
            default = self.defaults[key]
            params[key] = _coerce_like(default, value, f"{self.name}.{key}",
                                       self.param_types().get(key))
        ignored = self.overridden_by(params)
        for key in overrides or {}:
            if key in ignored:
                winner = ignored[key]
                raise ConfigError(
                    f"{self.name}.{key}={params[key]!r} would not be used: "
                    f"{winner}={params[winner]!r} overrides it; set {self.name}.{winner}="
                    f"none as well to use {key}")
        return params


@dataclass
class Dataset:
    """A scan to benchmark on.

    ``load()`` returns an :class:`xarray.Dataset` in the scan schema (see
    :mod:`maxrf_bench.scan`).  ``default=True`` marks the embedded default used when the
    user names no dataset (at most one dataset should claim it).
    """

    name: str
    load: Callable[[], xr.Dataset]
    description: str = ""
    default: bool = False

    def __post_init__(self) -> None:
        _check_name("dataset", self.name)


@dataclass
class Metric:
    """A quality metric.

    ``compute(sr, truth, lr, operator)`` gets ``(element, y, x)`` float arrays (``truth``
    is ``None`` when the scan has no ground truth, ``lr`` is ``(element, y_lr, x_lr)``)
    and returns ``(per_element, overall)``: an array of shape ``(element,)`` (NaN where
    not defined) and one float.  ``needs_truth`` metrics are skipped without ground truth.
    """

    name: str
    compute: Callable[..., tuple[np.ndarray, float]]
    description: str = ""
    higher_is_better: bool = False
    needs_truth: bool = True
    units: str = ""

    def __post_init__(self) -> None:
        _check_name("metric", self.name)


def _check_name(kind: str, name: str) -> None:
    import re

    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name or ""):
        raise ValueError(
            f"{kind} name must be lower-case letters, digits, '-', '_' or '.', found {name!r}"
        )


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value: int, float, bool, none, or a string."""
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


_SIMPLE = {"bool": bool, "int": int, "float": float, "str": str}


def _annotations(func: Callable) -> dict[str, type]:
    """``{parameter: bool|int|float|str}`` of ``func``'s annotations that name one of those
    types (also as a string, and ``X | None`` / ``Optional[X]``); others are left out."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return {}
    out = {}
    for name, p in params.items():
        ann = p.annotation
        if ann is p.empty:
            continue
        text = ann if isinstance(ann, str) else getattr(ann, "__name__", None) or str(ann)
        text = text.replace("typing.", "").replace(" ", "")
        if text.startswith("Optional[") and text.endswith("]"):
            text = text[len("Optional["):-1]
        parts = [t for t in text.split("|") if t not in ("None", "NoneType")]
        if len(parts) == 1 and parts[0] in _SIMPLE:
            out[name] = _SIMPLE[parts[0]]
        elif isinstance(ann, type) and ann in _SIMPLE.values():
            out[name] = ann
    return out


def _coerce_like(default: Any, value: Any, where: str, kind: type | None = None) -> Any:
    from .errors import ConfigError

    if isinstance(value, str):
        value = parse_value(value)
    shown = default
    if kind is not None and value is not None and default is not None \
            and not isinstance(default, kind) and kind in (bool, int, float, str):
        default = kind()  # the annotation decides: detail: float = 1 takes 0.5
    elif kind is not None and default is None and value is not None and kind in (int, float, str):
        default = kind()
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        return str(value)
    else:
        return value
    raise ConfigError(
        f"{where} expects a {type(default).__name__} (default {shown!r}), found {value!r}"
    )


def call_with_params(func: Callable, inputs: MethodInputs, params: Mapping[str, Any]):
    """Call a method's ``run`` with only the parameters it accepts (or all, with **kwargs)."""
    sig = inspect.signature(func)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return func(inputs, **params)
    accepted = {k: v for k, v in params.items() if k in sig.parameters}
    return func(inputs, **accepted)
