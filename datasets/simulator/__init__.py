"""A physically based simulator of MA-XRF scans of paintings (the embedded default data).

A painting is a stack of paint layers (ground, priming, a hidden earlier design, the
visible paint) made of real pigments (:mod:`.pigments`) laid down with brush strokes,
edges, fine detail and craquelure (:mod:`.canvas`, :mod:`.scenes`).  The element maps are
the primary X-ray fluorescence of that stack, with attenuation of the beam and of each
line by the layers above from ``xraydb`` (:mod:`.physics`); the photograph is the
Kubelka–Munk colour of the surface.  The scanner adds a beam spot, row jitter and
Poisson counting noise, the camera blur and noise (:mod:`.scanner`).

Registered datasets: ``sim-flowers`` (21 lines), ``sim-virgin`` (9), ``sim-isabel`` (7),
all 512×512, and ``sim-demo`` (8 lines, 128×128, the default).  Command:
``maxrf-bench simulate --preset NAME --seed N -o SCAN.zarr``.

Python::

    from maxrf_bench_datasets.simulator import simulate
    scan = simulate("sim-flowers", seed=1)
"""
from __future__ import annotations

from functools import lru_cache

import click

import maxrf_bench as mb

from .presets import PRESETS, Preset, get_preset, preset_names, simulate

__all__ = ["PRESETS", "Preset", "get_preset", "load_preset", "preset_names", "simulate"]

DEFAULT_PRESET = "sim-demo"


@lru_cache(maxsize=8)
def _cached(name: str, seed: int):
    return simulate(name, seed)


def load_preset(name: str, seed: int = 0):
    """The preset's scan for ``seed``, simulated once per process (a copy is returned, so
    callers may modify it)."""
    return _cached(name, int(seed)).copy(deep=True)


def _loader(name: str):
    def load():
        return load_preset(name, 0)
    load.__doc__ = f"Simulate preset {name!r} (seed 0), cached in memory."
    return load


@mb.hookimpl
def maxrf_bench_register_datasets(register):
    for name in preset_names():
        p = PRESETS[name]
        register(mb.Dataset(name=name, load=_loader(name), description=p.description,
                            default=(name == DEFAULT_PRESET)))


@mb.hookimpl
def maxrf_bench_register_commands(cli):
    @cli.command("simulate")
    @click.option("--preset", "-p", default=DEFAULT_PRESET, show_default=True,
                  help=f"Simulator preset: {', '.join(preset_names())}.")
    @click.option("--seed", type=int, default=0, show_default=True, help="Random seed (scene and noise).")
    @click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
                  help="Output Zarr store (written atomically).")
    @click.option("--size", type=int, default=None, help="Image size in pixels (default: the preset's).")
    @click.option("--dwell-ms", type=float, default=None, help="Dwell time per pixel (default: the preset's).")
    @click.option("--no-noise", is_flag=True, help="Write the expected counts (no counting noise).")
    def simulate_cmd(preset, seed, out, size, dwell_ms, no_noise):
        """Simulate an MA-XRF scan of a painting (element maps + photograph) into SCAN.zarr."""
        get_preset(preset)  # unknown name → ConfigError before any work
        mb.check_output(out, kind="scan store", owned=mb.owned_scan)
        if size is not None and size < 16:
            raise mb.ConfigError(f"--size must be at least 16 pixels, found {size}")
        if dwell_ms is not None and not dwell_ms > 0:
            raise mb.ConfigError(f"--dwell-ms must be a positive time per pixel, found {dwell_ms:g}")
        if seed < 0:
            raise mb.ConfigError(f"--seed must be a non-negative integer, found {seed}")
        ds = simulate(preset, seed, size=size, dwell_ms=dwell_ms, noise=not no_noise)
        path = mb.save_scan(ds, out)
        maps = ds["maps"].values
        click.echo(f"wrote {path}: {maps.shape[0]} element maps "
                   f"({', '.join(str(e) for e in ds['element'].values)}), "
                   f"{maps.shape[1]}×{maps.shape[2]} px, counts {maps.min():.0f}–{maps.max():.0f}, "
                   f"simulated in {ds.attrs['simulator_seconds']:.1f} s")
