"""Simulated scans: presets (analogues of the paper's three paintings and a small demo)
and :func:`simulate`, which runs scene → physics → instruments → scan."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

import maxrf_bench as mb

from . import physics, scenes
from . import scanner as instruments


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    scene: str
    size: int
    elements: tuple[str, ...]
    pixel_size_mm: float
    description: str
    view: tuple[float, float, float] | None = None   # (zoom, x0, y0): a detail of the canvas
    scanner: instruments.ScannerModel = field(default_factory=instruments.ScannerModel)
    camera: instruments.CameraModel = field(default_factory=instruments.CameraModel)


FLOWERS_LINES = ("Pb_L", "Pb_M", "Hg_L", "Hg_M", "Ca_K", "Fe_K", "Cu_K", "Mn_K", "K_K", "Sn_L",
                 "Sb_L", "Co_K", "Ni_K", "As_K", "Zn_K", "Cr_K", "S_K", "Ti_K", "Sr_K", "Ba_L",
                 "Si_K")

PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("sim-flowers", "Simulated flower still life (after de Heem's Flowers and Insects)",
           "still_life", 512, FLOWERS_LINES, 0.25,
           "simulated Dutch flower still life, 21 element lines, 512×512, with a pentimento, "
           "a lead-white dead-colouring and 19th-c. retouchings"),
    Preset("sim-virgin", "Simulated Madonna panel (after Leonardo's Virgin of the Rocks)",
           "madonna", 512, ("Pb_L", "Pb_M", "Hg_L", "Ca_K", "Fe_K", "Cu_K", "Mn_K", "K_K", "Zn_K"),
           0.4, "simulated Renaissance panel, 9 element lines, 512×512, with a zinc-bearing "
           "underdrawing and an abandoned angel under the paint"),
    Preset("sim-isabel", "Simulated portrait (after Goya's Doña Isabel de Porcel)",
           "portrait", 512, ("Pb_L", "Pb_M", "Hg_L", "Fe_K", "Ca_K", "Cu_K", "Mn_K"), 0.3,
           "simulated portrait, 7 element lines, 512×512, painted over a man's portrait"),
    Preset("sim-demo", "Simulated flower still life, a detail (demo)",
           "still_life", 128, ("Pb_L", "Pb_M", "Hg_L", "Ca_K", "Fe_K", "Cu_K", "Sn_L", "Mn_K"),
           0.4, "a 128×128 detail of the simulated still life (flowers, leaves and the "
           "pentimento), 8 element lines: the quick default", view=(2.5, 0.1, 0.15)),
]}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise mb.ConfigError(f"unknown simulator preset {name!r}; expected one of: "
                             f"{', '.join(preset_names())}") from None


def simulate(preset: str = "sim-demo", seed: int = 0, *, size: int | None = None,
             elements=None, dwell_ms: float | None = None, noise: bool = True,
             return_layers: bool = False):
    """Simulate a scan; returns an :class:`xarray.Dataset` in the maxrf-bench schema
    (``maps``: HR counts per line ``(element, y, x)``, ``maps_clean``: their noise-free
    expected values (no Poisson, gain or jitter noise; absent when ``noise=False``, where
    ``maps`` already is that), ``rgb``: the photograph, ``hidden_share``: per line, the share
    of its signal from layers the photograph does not show, :func:`physics.hidden_share`).

    Deterministic for ``(preset, seed, size, elements, dwell_ms, noise)``.  ``size``
    overrides the preset's image size, ``elements`` its line list, ``dwell_ms`` its dwell
    time; ``noise=False`` gives the expected counts (no Poisson, gain or jitter noise).
    With ``return_layers`` the paint stack (:class:`physics.Layer` list, top first) is
    returned too, as ``(scan, layers)``.
    """
    p = get_preset(preset)
    size = int(size or p.size)
    if size < 16:
        raise mb.ConfigError(f"simulator size must be at least 16 pixels, found {size}")
    lines = tuple(elements or p.elements)
    try:
        for line in lines:
            physics.parse_line(line)
    except ValueError as exc:
        raise mb.ConfigError(str(exc)) from None
    scan_model = p.scanner if dwell_ms is None else replace(p.scanner, dwell_ms=float(dwell_ms))
    scan_model = replace(scan_model, noise=bool(noise))
    seq = np.random.SeedSequence([int(seed), 0x5EED])
    rng_scene, rng_xrf, rng_cam = (np.random.default_rng(s) for s in seq.spawn(3))

    t0 = time.perf_counter()
    bar = mb.progress_bar(f"simulating {p.name} {size}×{size}", unit="step")
    bar(0, 6, "paint layers")
    layers = scenes.SCENES[p.scene](size, rng_scene, view=p.view)
    bar(1, 6, "fluorescence")
    intensity = physics.fluorescence(layers, lines)
    bar(2, 6, "scanner")
    counts = instruments.acquire(intensity, scan_model, rng_xrf)
    # per line, the share of its signal from layers the photograph does not show
    hidden = physics.hidden_share(layers, lines)
    bar(3, 6, "clean truth")
    # the noise-free expected counts at the nominal positions: a second, clean truth
    clean = instruments.acquire(intensity, replace(scan_model, noise=False), rng_xrf) if noise else None
    bar(4, 6, "colour")
    reflectance = physics.surface_reflectance(layers)
    bar(5, 6, "photograph")
    rgb = instruments.photograph(reflectance, p.camera, rng_cam)
    bar(6, 6, "done")
    t2 = time.perf_counter()
    pixel = p.pixel_size_mm * p.size / size
    attrs = dict(
        simulator_preset=p.name, simulator_seed=int(seed), simulator_scene=p.scene,
        simulator_view=list(p.view or (1.0, 0.0, 0.0)),
        simulator_layers=[layer.name for layer in layers],
        simulator_dwell_ms=scan_model.dwell_ms,
        simulator_noise_model=scan_model.describe(),
        simulator_colour_model="single-constant Kubelka-Munk mixing of pigment K/S by volume; "
                               "layers composited with opacity 1-exp(-t/2.5um)",
        simulator_physics="primary XRF of a layered stack (Sherman), xraydb "
                          f"{getattr(__import__('xraydb'), '__version__', '?')} attenuation, "
                          "excitation 10/20.2/27 keV, 45/45 deg geometry",
        simulator_seconds=round(t2 - t0, 3),
        description=p.description,
        **scan_model.as_attrs(), **p.camera.as_attrs(),
    )
    ds = mb.make_scan(maps=counts, maps_clean=clean, hidden_share=hidden, rgb=rgb, elements=list(lines), pixel_size_mm=pixel,
                      title=p.title, source="maxrf_bench_datasets.simulator (simulated)",
                      licence="CC0-1.0 (simulated data)", units="counts", **attrs)
    return (ds, layers) if return_layers else ds
