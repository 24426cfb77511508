"""Helpers for testing plugins, for third-party authors as much as for us.

Test a method plugin in five lines::

    from maxrf_bench.testing import registered_plugin, check_method
    import my_plugin

    def test_my_method(tmp_path):
        with registered_plugin(my_plugin):
            check_method("my-method", tmp_path)
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import PluginError
from .plugins import get_registry


def toy_scene(size: int = 32, elements: int = 4, seed: int = 0) -> dict:
    """Arguments of :func:`maxrf_bench.make_scan` for a small painting-like scene.

    Smooth regions of three pigments with sharp edges (so the photograph carries the
    structure), a diagonal hidden layer that only the last element map shows, and an RGB
    rendered from the visible layer.  Values are counts (0–~200).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    regions = np.stack([
        (np.hypot(yy - 0.35, xx - 0.4) < 0.22).astype(float),
        ((xx + 0.3 * np.sin(6 * yy)) > 0.65).astype(float),
        ((yy > 0.7) & (xx < 0.5)).astype(float),
    ])
    regions[0] *= 1 - regions[1]
    background = np.clip(1 - regions.sum(0), 0, 1)
    layers = np.concatenate([regions, background[None]])
    hidden = (np.abs(xx - yy) < 0.08).astype(float)
    mix = rng.uniform(0.2, 1.0, size=(elements, 4))
    maps = np.einsum("ek,kyx->eyx", mix, layers)
    maps[-1] = 0.3 * maps[-1] + hidden  # a layer the photograph does not show
    maps += 0.02 * rng.random(maps.shape)
    colours = np.array([[0.8, 0.2, 0.1], [0.1, 0.5, 0.2], [0.2, 0.3, 0.8], [0.9, 0.9, 0.85]])
    rgb = np.einsum("kc,kyx->cyx", colours, layers)
    rgb = np.clip(rgb + 0.01 * rng.standard_normal(rgb.shape), 0, 1)
    names = ["Pb_L", "Hg_L", "Cu_K", "Ca_K", "Fe_K", "Zn_K", "Mn_K", "Co_K"]
    if elements > len(names):
        names += [f"X{i}_K" for i in range(elements - len(names))]
    return dict(maps=(100 * maps).astype(np.float32), rgb=rgb.astype(np.float32),
                elements=names[:elements])


@contextmanager
def registered_plugin(plugin: object, name: str | None = None):
    """Register ``plugin`` (a module or object with hook implementations) for a block.

    When the plugin is installed (``pip install -e .``), its entry point has registered the
    same module already: then nothing is registered a second time and nothing is removed
    afterwards, so the test behaves the same installed or not, in any order.  Raises
    :class:`maxrf_bench.PluginError` with the reason when the plugin, or an item it
    registers, is refused (a misspelled hook, a duplicate name, defaults that ``run`` does
    not accept…).
    """
    reg = get_registry()
    reg._ensure()
    existing = reg.name_of(plugin)
    if existing is not None:
        _raise_failures(reg, existing)
        yield reg
        return
    name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    if name in reg.plugins:
        raise PluginError(f"registered_plugin: a different plugin named {name!r} is registered "
                          "already; pass name='another-name'")
    reg.add(plugin, name)
    try:
        _raise_failures(reg, name)
        yield reg
    finally:
        reg.remove(name)


def _raise_failures(reg, name: str) -> None:
    failures = reg.failures_of(name)
    if failures:
        raise PluginError("; ".join(f"plugin {f.plugin!r} failed to {f.stage}: {f.error}"
                                    for f in failures))


class CellFailed(AssertionError):
    """A method or metric failed inside a check: the message is the cell's own error (what the
    run's ``error.log`` says, with its traceback), not a lookup error of the checker."""


def _run_errors(run: Path, label: str | None = None) -> list[str]:
    """The errors of the cells of ``label`` (all cells when ``None``) and of every failed
    metric, from the run's manifest, each with the traceback of its ``error.log``."""
    from .errors import StoreError
    from .rundir import ERROR_LOG, RunDir, read_manifest
    from .variants import label_dirname

    try:
        manifest = read_manifest(run)
    except StoreError:
        return []
    out = []
    for t in manifest.get("timings", []):
        if t.get("error") and (label is None or t.get("method") == label):
            logs = sorted(RunDir(run).cells_dir.glob(f"*/{label_dirname(t['method'])}/*/{ERROR_LOG}"))
            trace = logs[0].read_text() if logs else ""
            out.append(f"{t['method']} failed on the toy scene: {t['error']}"
                       + (f"\n\n{trace}" if trace else ""))
    out += list(manifest.get("metric_failures", []))
    return out


def _toy_run(methods: list[str], tmp_path: Path, *, size: int, scale: int, preset, sets=None,
             metrics=None):
    import maxrf_bench as mb

    scan_path = mb.save_scan(mb.make_scan(**toy_scene(size), title="toy scene"), tmp_path / "toy.zarr")
    run = tmp_path / "run"
    mb.run_grid(methods, [str(scan_path)], out=run, scale=scale, preset=preset,
                sets=sets or {}, metrics=metrics)
    return run, mb.read_results(run)


def check_method(method: str, tmp_path: str | Path, *, size: int = 32, scale: int = 4,
                 preset: str | None = "fast", **params) -> float:
    """Run ``method`` and bicubic on a toy scene; check the output; return the PSNR gain (dB)
    of ``method`` over bicubic so a test can assert it.

    When the method fails (raises, returns a wrong shape or NaNs), raises
    :class:`CellFailed` with the cell's own error and traceback."""
    tmp_path = Path(tmp_path)
    methods = ["bicubic", method] if method != "bicubic" else ["bicubic"]
    run, results = _toy_run(methods, tmp_path, size=size, scale=scale, preset=preset,
                            sets={method: params} if params else {})
    # the column label carries non-default parameters (``my-method[strength=2]``)
    labels = [m for m in results.methods if m != "bicubic"] if method != "bicubic" else ["bicubic"]
    errors = _run_errors(run)
    if errors or not labels:
        raise CellFailed("\n".join(errors) or f"{method} gave no result on the toy scene")
    label = labels[0]
    psnr = results.value("toy", label, "psnr")
    assert np.isfinite(psnr), f"{label} gave a non-finite PSNR"
    return psnr - results.value("toy", "bicubic", "psnr")


def check_metric(metric: str, tmp_path: str | Path, *, size: int = 32, scale: int = 4,
                 methods: tuple[str, ...] = ("bicubic", "bicubic+P")) -> dict[str, float]:
    """Score ``methods`` on a toy scene with ``metric`` through the real runner and return
    ``{column label: overall value}`` so a test can assert values (or an order).

    Checks what the host needs: the metric runs on every column, gives one value per
    element line and a finite overall value.  A metric that raises, or returns a
    per-element array of the wrong length, raises :class:`CellFailed` with its own error."""
    import maxrf_bench as mb

    tmp_path = Path(tmp_path)
    item = mb.get_metric(metric)  # an unknown name: UnknownNameError, with the loaded plugins
    run, results = _toy_run(list(methods), tmp_path, size=size, scale=scale, preset=None,
                            metrics=[metric])
    errors = _run_errors(run)
    if errors:
        raise CellFailed("\n".join(errors))
    truth = "measured" if item.needs_truth else "none"
    out = {}
    for label in results.methods:
        rows = [r for r in results.rows if r["method"] == label and r["metric"] == metric
                and r["truth"] == truth]
        per = [r for r in rows if r["element"] != "all"]
        assert len(per) == len(toy_scene(size)["elements"]), \
            f"{metric} gave {len(per)} per-element values for {label}, expected one per element"
        value = results.value("toy", label, metric, truth=truth)
        assert np.isfinite(value), f"{metric} gave a non-finite overall value for {label}: {value}"
        out[label] = float(value)
    return out
