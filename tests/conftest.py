"""Shared fixtures: small, real (not constant) scenes built on the fly."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import maxrf_bench as mb

SHARED_DATA = Path(os.environ.get("MAXRF_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def toy_scene(size: int = 32, elements: int = 4, seed: int = 0) -> dict:
    """A little painting: smooth regions of three pigments with sharp edges, a hidden
    layer that only one element map shows, and an RGB rendered from the visible layer."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    regions = np.stack([
        (np.hypot(yy - 0.35, xx - 0.4) < 0.22).astype(float),
        ((xx + 0.3 * np.sin(6 * yy)) > 0.65).astype(float),
        ((yy > 0.7) & (xx < 0.5)).astype(float),
    ])
    regions[0] *= 1 - regions[1]
    background = np.clip(1 - regions.sum(0), 0, 1)
    hidden = (np.abs(xx - yy) < 0.08).astype(float)
    mix = rng.uniform(0.2, 1.0, size=(elements, 4))
    maps = np.einsum("ek,kyx->eyx", mix, np.concatenate([regions, background[None]]))
    maps[-1] = 0.3 * maps[-1] + hidden  # a layer the photograph does not show
    maps += 0.02 * rng.random(maps.shape)
    colours = np.array([[0.8, 0.2, 0.1], [0.1, 0.5, 0.2], [0.2, 0.3, 0.8], [0.9, 0.9, 0.85]])
    rgb = np.einsum("kc,kyx->cyx", colours, np.concatenate([regions, background[None]]))
    rgb = np.clip(rgb + 0.01 * rng.standard_normal(rgb.shape), 0, 1)
    names = ["Pb_L", "Hg_L", "Cu_K", "Ca_K", "Fe_K", "Zn_K"][:elements]
    return dict(maps=(100 * maps).astype(np.float32), rgb=rgb.astype(np.float32), elements=names)


@pytest.fixture
def toy_scan():
    return mb.make_scan(**toy_scene(), title="toy", source="tests/conftest.py")


@pytest.fixture
def shared_data():
    if not SHARED_DATA.exists():
        pytest.skip(f"real sample data not present at {SHARED_DATA}")
    return SHARED_DATA
