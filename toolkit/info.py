"""``maxrf-bench info NAME``: everything the host knows of one method, dataset or metric.

A method: its description, the plugin (and distribution, version) that registered it, the
reference and how faithful the implementation is, what it needs beyond the core install,
whether it projects and whether it is deterministic, and every parameter with its type,
default and the value of each preset that changes it, and which parameters override
others.  A dataset: description, plugin, and the scan it loads (elements, grids, pixel size,
truths).  A metric: description, plugin, direction, whether it needs a truth, units, and
the optional keywords its ``compute`` takes.  A path to a ``.zarr`` scan is described like
a dataset.
"""
from __future__ import annotations

import inspect
from pathlib import Path

from .errors import ConfigError
from .plugins import KINDS, get_registry

#: optional keywords the host passes to a metric's ``compute`` when it accepts them
METRIC_KEYWORDS = {"rgb": "the photograph (band, y, x) in [0, 1] on the HR grid"}


def _plugin_line(reg, kind: str, name: str) -> str:
    owner = reg.owner_of(kind, name)
    info = reg.plugins.get(owner)
    version = f" {info.version}" if info and info.version else ""
    dist = f" (distribution {info.distribution})" if info and info.distribution else ""
    return f"{owner}{version}{dist}"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value or '""'
    return "none" if value is None else str(value)


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def describe_method(name: str) -> str:
    reg = get_registry()
    m = reg.get("methods", name)
    lines = [f"method {m.name}", f"  {m.description or '(no description)'}",
             f"  plugin: {_plugin_line(reg, 'methods', name)}",
             f"  reference: {m.reference or '(none given)'}",
             f"  needs: {m.needs or 'nothing beyond the core install'}"]
    if callable(m.projects):
        with_defaults = "yes" if m.projects_with(m.params()) else "no"
        per = ", ".join(f"{p} {'yes' if m.projects_with(m.params(p)) else 'no'}" for p in m.presets)
        proj = f"depends on the parameters (defaults: {with_defaults}" + (f"; {per})" if per else ")")
    else:
        proj = "yes (+P is refused)" if m.projects else "no (+P adds the host's projection)"
    lines.append(f"  projects onto the measured scan: {proj}")
    lines.append("  deterministic: " + ("yes (runs once whatever the seeds)" if m.deterministic
                                        else "no (runs once per seed)"))
    lines.append(f"  uses the photograph: {'yes' if m.uses_rgb else 'no'}")
    lines.append(f"  exports ONNX: {'yes' if m.export else 'no'}")
    if m.check is not None:
        lines.append("  checks its parameters before a run starts: yes")
    if m.defaults:
        types = m.param_types()
        presets = list(m.presets)
        rows = [["parameter", "type", "default", *presets]]
        for key, default in m.defaults.items():
            kind = types.get(key)
            rows.append([key, kind.__name__ if kind else "any", _fmt(default),
                         *(_fmt(m.presets[p][key]) if key in m.presets[p] else "·" for p in presets)])
        lines.append("  parameters (· = the preset keeps the default; set with --set "
                     f"{m.name}.KEY=VALUE or the column {m.name}[KEY=VALUE]):")
        lines += ["    " + r for r in _table(rows)]
    else:
        lines.append("  parameters: none")
    if not m.presets:
        lines.append("  presets: none")
    for winner, losers in m.overrides.items():
        lines.append(f"  {winner} overrides {', '.join(losers)} while it is set (not none/false)")
    return "\n".join(lines)


def describe_metric(name: str) -> str:
    reg = get_registry()
    m = reg.get("metrics", name)
    try:
        params = inspect.signature(m.compute).parameters
        any_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
        keywords = [k for k in METRIC_KEYWORDS if any_kw or k in params]
    except (TypeError, ValueError):
        keywords = []
    lines = [f"metric {m.name}", f"  {m.description or '(no description)'}",
             f"  plugin: {_plugin_line(reg, 'metrics', name)}",
             f"  better: {'higher' if m.higher_is_better else 'lower'}",
             f"  needs a truth: {'yes' if m.needs_truth else 'no (no-reference)'}",
             f"  units: {m.units or 'none'}",
             "  keywords compute takes: " + (", ".join(f"{k}= ({METRIC_KEYWORDS[k]})" for k in keywords)
                                            or "none (sr, truth, lr, operator only)")]
    return "\n".join(lines)


def _describe_scan(scan, lines: list[str]) -> None:
    elements = [str(e) for e in scan["element"].values]
    lines.append(f"  elements ({len(elements)}): {', '.join(elements)}")
    for var in ("maps", "maps_clean", "maps_lr", "maps_dwell", "rgb"):
        if var in scan:
            lines.append(f"  {var}: {' × '.join(str(n) for n in scan[var].shape)}")
    if "maps_dwell" in scan:
        lines.append(f"  short dwell: maps_dwell is an HR-step scan of a shorter dwell (relative "
                     f"dwell {float(scan.attrs.get('maps_dwell_time', 1.0)):g}) binned into maps_lr; "
                     "+F fuses a method's output with it")
    truths = [t for t, v in (("measured", "maps"), ("clean", "maps_clean")) if v in scan]
    lines.append(f"  truth: {', '.join(truths) or 'none (measured LR maps only)'}")
    for attr in ("title", "pixel_size_mm", "scale", "source", "orientation",
                 "registration_method", "registration_residual_px_rms"):
        value = scan.attrs.get(attr)
        if value not in (None, ""):
            lines.append(f"  {attr}: {value:g}" if isinstance(value, float) else f"  {attr}: {value}")
    if "hidden_share" in scan:  # issue 22: which lines the photograph does not show
        shares = ", ".join(f"{e} {float(v):.2f}" for e, v in zip(elements, scan["hidden_share"].values))
        lines.append(f"  hidden_share: {shares}")


def describe_dataset(name: str) -> str:
    reg = get_registry()
    d = reg.get("datasets", name)
    lines = [f"dataset {d.name}" + (" (the default)" if d.default else ""),
             f"  {d.description or '(no description)'}",
             f"  plugin: {_plugin_line(reg, 'datasets', name)}"]
    _describe_scan(d.load(), lines)
    return "\n".join(lines)


def describe_path(path: str) -> str:
    from .scan import open_scan

    lines = [f"scan {path}"]
    _describe_scan(open_scan(path), lines)
    return "\n".join(lines)


def describe(name: str, kind: str | None = None) -> str:
    """The ``info`` text of ``name`` (a method, dataset or metric, or a ``.zarr`` path)."""
    if kind is None and (name.endswith(".zarr") or Path(name).is_dir()):
        return describe_path(name)
    reg = get_registry()
    kinds = [kind] if kind else list(KINDS)
    found = [k for k in kinds if name in reg.all(k)]
    if not found:
        known = {k: sorted(reg.all(k)) for k in kinds}
        from difflib import get_close_matches

        close = get_close_matches(name, [n for names in known.values() for n in names], n=3)
        owners = reg.preset_owners(name) if "methods" in kinds else []
        if owners:
            hint = (f"; {reg.preset_hint(name)} (`maxrf-bench info {owners[0]}` lists the "
                    f"preset's parameters)")
        elif close:
            hint = f"; did you mean {', '.join(close)}?"
        else:
            hint = "; see `maxrf-bench list methods|datasets|metrics`"
        what = kind[:-1] if kind else "method, dataset or metric"
        raise ConfigError(f"info: expected the name of a registered {what}, found {name!r}{hint}")
    out = {"methods": describe_method, "datasets": describe_dataset, "metrics": describe_metric}
    return "\n\n".join(out[k](name) for k in found)
