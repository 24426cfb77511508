"""Real scans from ``../shared/data`` as dataset plugins (registered only where present).

``miniature`` — an oval portrait miniature (c. 1800 style), from ``alma_miniature``
(almaavu/Corrimag, GPL-3.0): As Kβ and Cu maps on a 977×787 grid, decoded from the
false-colour JPEG exports to floats (``maps_scalar.npz``), and the photograph
``VIS_hr.jpg`` (1815×1458, about 1.855× the map grid, same field of view).

It is a ground-truth scan (``maps``), on the grid of the maps:

* the top 48 rows hold a burned-in label in the top-left corner (``valid_mask`` False on
  rows 0:48, columns 0:112): they are cropped away rather than filled with made-up
  values; then rows and columns are cropped to a multiple of 4 for the ×4 benchmark:
  rows 48:976 and columns 1:785, i.e. **928×784** (y, x);
* the photograph is resampled onto the full 977×787 map grid and registered to the maps
  (gradient-magnitude NCC, :mod:`.registration`; the photo is 2–3 px off), then cropped
  the same way.  ``miniature-unregistered`` is the same scan without registration, so
  that ``maxrf-bench run --datasets miniature,miniature-unregistered`` shows what the
  registration does to a method's results.

The data folder is ``$MAXRF_SHARED_DATA`` when set, else ``shared/data`` next to the
checkout (``Path(__file__).resolve().parents[2] / "shared" / "data"``).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

import maxrf_bench as mb

from .labels import parse_label
from .registration import estimate_offset, resample_photo

MINIATURE_ROWS = slice(48, 976)
MINIATURE_COLS = slice(1, 785)
MINIATURE_REGISTRATION = "affine"


def shared_data_dir() -> Path:
    """Where the real sample data live (may not exist)."""
    env = os.environ.get("MAXRF_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def vinca_roi_maps(key: str = "prova1_stacked", data: Path | None = None) -> tuple[list[str], np.ndarray] | None:
    """The ``vinca_fresco`` ROI maps of one scan and detector (``prova1_stacked``,
    ``prova2_10264``…): the line names and the raw counts ``(line, y, x)`` (int64), or ``None``
    where the real data are not present (benchmarks print a skip line then).  ``data``: the
    shared data folder (default :func:`shared_data_dir`)."""
    path = Path(data or shared_data_dir()) / "vinca_fresco" / "element_roi_maps.npz"
    if not path.exists():
        return None
    with np.load(path) as z:
        return [str(n) for n in z["element_names"]], z[f"{key}_roi"].astype(np.int64)


@functools.lru_cache(maxsize=4)
def _miniature_arrays(register: bool):
    from PIL import Image

    folder = shared_data_dir() / "alma_miniature"
    with np.load(folder / "maps_scalar.npz") as z:
        labels = ["As-KB", "Cu"]
        maps = np.stack([z[k] for k in labels]).astype(np.float32)
        valid = np.asarray(z["valid_mask"], dtype=bool)
    with Image.open(folder / "VIS_hr.jpg") as im:
        photo = np.asarray(im.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0
    grid = maps.shape[1:]
    attrs = {"registration_method": "none"}
    offset, matrix = (0.0, 0.0), None
    if register:
        reg = estimate_offset(maps, resample_photo(photo, grid), mask=valid,
                              model=MINIATURE_REGISTRATION)
        offset, matrix = reg.offset, reg.matrix
        attrs = reg.attrs()
    rgb = resample_photo(photo, grid, offset=offset, matrix=matrix)
    crop = (slice(None), MINIATURE_ROWS, MINIATURE_COLS)
    return maps[crop], rgb[crop], labels, attrs


def load_miniature(register: bool = True):
    """The ``miniature`` scan: maps (As_K, Cu_K) 928×784 and the registered photograph."""
    maps, rgb, labels, attrs = _miniature_arrays(register)
    return mb.make_scan(
        maps=maps.copy(), rgb=rgb.copy(), elements=[parse_label(l).name for l in labels],
        element_labels=labels, title="Portrait miniature (As Kβ, Cu)",
        source="almaavu/Corrimag sample/j2025 @12d56e1 (via ../shared/data/alma_miniature); "
               "maps decoded from false-colour JPEG exports",
        licence="GPL-3.0", units="decoded display intensity (not counts)",
        crop_px=[MINIATURE_ROWS.start, MINIATURE_COLS.start, 977 - MINIATURE_ROWS.stop,
                 787 - MINIATURE_COLS.stop],
        **attrs)


@mb.hookimpl
def maxrf_bench_register_datasets(register):
    folder = shared_data_dir() / "alma_miniature"
    if not (folder / "maps_scalar.npz").exists() or not (folder / "VIS_hr.jpg").exists():
        return  # the sample data are not here: register nothing
    register(mb.Dataset(
        "miniature", load_miniature,
        description="real MA-XRF scan of a portrait miniature: As_K, Cu_K 928×784 with a "
                    "registered photograph (alma_miniature)"))
    register(mb.Dataset(
        "miniature-unregistered", lambda: load_miniature(register=False),
        description="the miniature with its photograph only resized, not registered "
                    "(to measure what registration does)"))
