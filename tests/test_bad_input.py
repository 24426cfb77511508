"""The bad-input battery: every entry point against malformed scans, corrupt files and bad
options (issue 13).

Each case of :data:`CASES` runs one command of the real command line (in-process, with
click's runner, so the battery stays fast) and asserts what a user must see:

* exit status 2 (3 for a busy run directory, which is not a bad input),
* exactly one line on stderr, ``Error: …``, containing the expected words (what was
  expected and what was found),
* no traceback,
* ``--out`` left as it was: not created when it did not exist, every file unchanged when
  it did.

The Python API cases assert a typed :class:`maxrf_bench.MaxrfError` subclass.  Property-based
tests (hypothesis) throw random corruptions at the scan validator, the option parsers and
the readers, which must answer with a ``MaxrfError`` or accept, never anything else.
A few cases also run through the installed ``maxrf-bench`` script in a subprocess (a real
process start, ``--debug``).

``len(CASES)`` CLI cases + ``len(API_CASES)`` API cases + the property tests are counted by
``test_battery_size`` (see the issue-13 note in the final report).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import maxrf_bench as mb
from maxrf_bench.cli import cli
from maxrf_bench.testing import toy_scene

from reliability_support import BIN, tree_state

SIZE = 32


# --- materials ----------------------------------------------------------------------------

def _raw_scan(path: Path, *, maps=None, rgb=None, elements=None, maps_lr=None, attrs=None,
              rgb_dims=("band", "y", "x"), drop=()) -> Path:
    """Write a store in the schema's layout with plain xarray, bypassing make_scan's checks."""
    d = toy_scene(SIZE, 3, seed=4)
    maps = d["maps"] if maps is None else maps
    rgb = d["rgb"] if rgb is None else rgb
    elements = d["elements"] if elements is None else elements
    data = {"rgb": (rgb_dims, rgb)}
    if maps is not False:
        data["maps"] = (("element", "y", "x"), maps)
    if maps_lr is not None:
        data["maps_lr"] = (("element", "y_lr", "x_lr"), maps_lr)
    data = {k: v for k, v in data.items() if k not in drop}
    coords = {"element": list(elements)}
    if rgb.shape[0] <= 3:
        coords["band"] = ["R", "G", "B"][: rgb.shape[0]]
    ds = xr.Dataset(data, coords=coords, attrs={"schema_version": 1, "title": "raw", **(attrs or {})})
    ds.to_zarr(path, zarr_format=2, mode="w")
    return path


def _modified(path: Path, var: str, fn: Callable[[np.ndarray], np.ndarray | None], **kw) -> Path:
    d = toy_scene(SIZE, 3, seed=4)
    arr = {"maps": d["maps"], "rgb": d["rgb"]}[var].copy()
    res = fn(arr)
    arr = arr if res is None else res
    return _raw_scan(path, **{var: arr}, **kw)


def _png(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(array).save(path)
    return path


@pytest.fixture(scope="module")
def m(tmp_path_factory):
    """Good inputs (a scan, an LR-only scan, a finished run, an image folder, an exported
    model) from which each case breaks one thing."""
    import tifffile

    root = tmp_path_factory.mktemp("battery")
    d = toy_scene(SIZE, 3, seed=4)
    good = mb.save_scan(mb.make_scan(**d, title="good"), root / "good.zarr")
    lr_maps = mb.block_mean(d["maps"], 4)
    lr = mb.save_scan(mb.make_scan(rgb=d["rgb"], elements=d["elements"], maps_lr=lr_maps,
                                   title="lr only"), root / "lr.zarr")
    run = root / "run"
    mb.run_grid(["bicubic"], [str(good)], out=run)
    folder = root / "maps"
    folder.mkdir()
    for i, el in enumerate(["Pb_L", "Hg_L", "Cu_K"]):
        tifffile.imwrite(folder / f"{el}.tif", (d["maps"][i] * 10).astype(np.uint16))
    photo = _png(root / "photo.png", (d["rgb"].transpose(1, 2, 0) * 255).astype(np.uint8))
    return {"root": root, "good": good, "lr": lr, "run": run, "folder": folder, "photo": photo,
            "elements": d["elements"]}


@pytest.fixture(scope="module")
def model(m):
    """An exported ONNX model (random generator weights stand in for trained ones) for the
    elements and scale of ``m['lr']``, and a finished proposed cell to export from."""
    pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    from maxrf_bench_plugins import onnx_commands
    from maxrf_bench_plugins.proposed.model import Generator, save_generator

    root = m["root"] / "trained"
    cell = root / "cells" / "lr" / "proposed" / "seed-0"
    work = cell / "work"
    work.mkdir(parents=True)
    torch.manual_seed(0)
    g = Generator(len(m["elements"])).eval()
    op = mb.BlockMean(4)
    params = {"projection": True, "activation": "sigmoid", "synthesis": "sigmoid"}
    save_generator(g, work, {"elements": m["elements"], "scale": 4, "operator": op.to_dict(),
                             "params": params, "projection": True})
    (cell / "cell.json").write_text(json.dumps({
        "key": "k", "dataset": "lr", "dataset_source": str(m["lr"]), "method": "proposed",
        "params": params, "preset": "fast", "seed": 0, "scale": 4, "operator": op.to_dict(),
        "elements": m["elements"], "normalisation": {"offset": [0.0] * 3, "span": [100.0] * 3},
        "metrics": {}}))
    path = onnx_commands.export_model(root, m["root"] / "model.onnx", dataset="lr")
    return {"path": path, "run": root, "cell": cell}


# --- the CLI cases ----------------------------------------------------------------------------

@dataclass
class Case:
    entry: str
    name: str
    build: Callable  # (m, tmp) -> (argv, out path or None); may use the `model` fixture via m
    expect: tuple[str, ...]
    needs_model: bool = False
    code: int = 2
    usage: bool = False  # a click usage error: "Usage: …" lines before the one Error line
    notes: bool = False  # status lines before the one Error line (infer: the provider it used)
    env: dict | None = None  # extra environment of the command


CASES: list[Case] = []


def case(entry, name, *expect, needs_model=False, code=2, usage=False, notes=False, env=None):
    def deco(fn):
        CASES.append(Case(entry, name, fn, tuple(expect), needs_model, code, usage, notes, env))
        return fn
    return deco


def _run(scan, tmp, *extra, methods="bicubic"):
    out = tmp / "out"
    return ["run", "-q", "-m", methods, "-d", str(scan), "-o", str(out), *extra], out


# run: malformed scans
@case("run", "NaN in maps", "'maps' must be finite, found 1 NaN/Inf values (first at element=Pb_L")
def _(m, tmp):
    return _run(_modified(tmp / "s.zarr", "maps", lambda a: a.__setitem__((0, 2, 3), np.nan)), tmp)


@case("run", "Inf in rgb", "'rgb' must be finite, found 1 NaN/Inf")
def _(m, tmp):
    return _run(_modified(tmp / "s.zarr", "rgb", lambda a: a.__setitem__((1, 0, 0), np.inf)), tmp)


@case("run", "negative counts", "'maps' must be non-negative counts, found 1 negative values")
def _(m, tmp):
    return _run(_modified(tmp / "s.zarr", "maps", lambda a: a.__setitem__((2, 5, 5), -3.0)), tmp)


@case("run", "photo out of range", "'rgb' must lie in [0, 1], found range")
def _(m, tmp):
    return _run(_modified(tmp / "s.zarr", "rgb", lambda a: a * 255), tmp)


@case("run", "8-bit photo written as it is", "'rgb' must lie in [0, 1], found range",
      "of dtype uint8 (divide an integer photograph by its largest value")
def _(m, tmp):
    return _run(_modified(tmp / "s.zarr", "rgb", lambda a: np.round(a * 255).astype(np.uint8)), tmp)


@case("run", "string dtype", "'maps' must be numeric, found dtype")
def _(m, tmp):
    return _run(_modified(tmp / "s.zarr", "maps", lambda a: a.astype(str)), tmp)


@case("run", "complex dtype", "'maps' must be real numbers, found dtype complex64")
def _(m, tmp):
    return _run(_modified(tmp / "s.zarr", "maps", lambda a: a.astype(np.complex64)), tmp)


@case("run", "no element", "'maps' has no element")
def _(m, tmp):
    d = toy_scene(SIZE, 3, seed=4)
    return _run(_raw_scan(tmp / "s.zarr", maps=d["maps"][:0], elements=[]), tmp)


@case("run", "empty image", "the scan is empty: expected maps and a photograph of at least 1×1 pixels, found 0×0")
def _(m, tmp):
    return _run(_raw_scan(tmp / "s.zarr", maps=np.zeros((3, 0, 0), np.float32),
                          rgb=np.zeros((3, 0, 0), np.float32)), tmp)


@case("run", "1-pixel scan", "scale 4 leaves no LR pixel of the scan's 1×1 grid")
def _(m, tmp):
    return _run(_raw_scan(tmp / "s.zarr", maps=np.ones((3, 1, 1), np.float32),
                          rgb=np.full((3, 1, 1), 0.5, np.float32)), tmp)


@case("run", "1-pixel LR grid", "found an LR grid of 1×1, which gives 0×0", )
def _(m, tmp):
    return _run(_raw_scan(tmp / "s.zarr", maps=np.random.default_rng(0).random((3, 4, 4)).astype(np.float32),
                          rgb=np.full((3, 4, 4), 0.5, np.float32)), tmp, "--protocol", "reduced")


@case("run", "photo on another grid", "'rgb' must be on the maps grid 32×28, found 32×32")
def _(m, tmp):
    import zarr

    d = toy_scene(SIZE, 3, seed=4)
    path = tmp / "s.zarr"
    xr.Dataset({"maps": (("element", "y", "x"), d["maps"][:, :, :28]),
                "rgb": (("band", "yy", "xx"), d["rgb"])},
               coords={"element": d["elements"], "band": ["R", "G", "B"]}).to_zarr(path, zarr_format=2)
    g = zarr.open_group(str(path), mode="r+", zarr_format=2)
    g["rgb"].attrs["_ARRAY_DIMENSIONS"] = ["band", "y", "x"]
    zarr.consolidate_metadata(str(path))
    return _run(path, tmp)


@case("run", "grey photo", "'rgb' must have 3 bands (R, G, B), found 1")
def _(m, tmp):
    return _run(_modified(tmp / "s.zarr", "rgb", lambda a: a[:1]), tmp)


@case("run", "RGBA photo", "'rgb' must have 3 bands (R, G, B), found 4")
def _(m, tmp):
    return _run(_modified(tmp / "s.zarr", "rgb", lambda a: np.concatenate([a, a[:1]])), tmp)


@case("run", "photo with dims swapped", "'rgb' must have dims ('band', 'y', 'x'), found ('y', 'x', 'band')")
def _(m, tmp):
    d = toy_scene(SIZE, 3, seed=4)
    return _run(_raw_scan(tmp / "s.zarr", rgb=d["rgb"].transpose(1, 2, 0), rgb_dims=("y", "x", "band")), tmp)


@case("run", "duplicate element labels", "element names must be unique, found duplicates ['Pb_L']")
def _(m, tmp):
    return _run(_raw_scan(tmp / "s.zarr", elements=["Pb_L", "Pb_L", "Cu_K"]), tmp)


@case("run", "empty element label", "element names must not be empty")
def _(m, tmp):
    return _run(_raw_scan(tmp / "s.zarr", elements=["Pb_L", "", "Cu_K"]), tmp)


@case("run", "no photo", "expected a variable 'rgb' (band, y, x)")
def _(m, tmp):
    return _run(_raw_scan(tmp / "s.zarr", drop=("rgb",)), tmp)


@case("run", "no maps", "expected a variable 'maps' (element, y, x) or 'maps_lr'")
def _(m, tmp):
    return _run(_raw_scan(tmp / "s.zarr", maps=False), tmp)


@case("run", "maps_lr not a divisor", "must be an integer multiple (the same in y and x) of 'maps_lr' (5×5)")
def _(m, tmp):
    return _run(_raw_scan(tmp / "s.zarr", maps=False, maps_lr=np.ones((3, 5, 5), np.float32)), tmp)


@case("run", "scale attribute disagrees", "attribute scale=2 but the grids differ by 4")
def _(m, tmp):
    return _run(_raw_scan(tmp / "s.zarr", maps=False, maps_lr=np.ones((3, 8, 8), np.float32),
                          attrs={"scale": 2}), tmp)


@case("run", "--scale disagrees with maps_lr", "--scale 2 does not match scan 'lr', whose maps_lr are 4× smaller")
def _(m, tmp):
    return _run(m["lr"], tmp, "--scale", "2")


@case("run", "scale larger than the scan", "scale 64 leaves no LR pixel of the scan's 32×32 grid")
def _(m, tmp):
    return _run(m["good"], tmp, "--scale", "64")


@case("run", "scale 0", "scale must be a positive integer, found 0")
def _(m, tmp):
    return _run(m["good"], tmp, "--scale", "0")


@case("run", "negative scale", "scale must be a positive integer, found -2")
def _(m, tmp):
    return _run(m["good"], tmp, "--scale", "-2")


@case("run", "negative beam sigma", "sigma", "found -1")
def _(m, tmp):
    return _run(m["good"], tmp, "--operator", "gaussian", "--sigma", "-1")


# run: missing, corrupt, truncated stores
@case("run", "missing store", "scan store", "does not exist (expected a .zarr directory)")
def _(m, tmp):
    return _run(tmp / "missing.zarr", tmp)


@case("run", "corrupt metadata", "cannot read scan store", "expected a Zarr store in the maxrf-bench schema")
def _(m, tmp):
    bad = tmp / "corrupt.zarr"
    bad.mkdir()
    (bad / ".zgroup").write_text("{")
    return _run(bad, tmp)


@case("run", "truncated chunk", "cannot read scan store", "its Blosc header declares")
def _(m, tmp):
    path = tmp / "s.zarr"
    shutil.copytree(m["good"], path)
    chunk = next(p for p in sorted((path / "maps").iterdir()) if not p.name.startswith("."))
    chunk.write_bytes(chunk.read_bytes()[: len(chunk.read_bytes()) // 2])
    return _run(path, tmp)


@case("run", "missing chunk", "'maps' must be finite, found 3072 NaN/Inf values")  # zarr: a missing chunk reads as NaN
def _(m, tmp):
    path = tmp / "s.zarr"
    shutil.copytree(m["good"], path)
    for p in (path / "maps").iterdir():
        if not p.name.startswith("."):
            p.unlink()
    return _run(path, tmp)


@case("run", "garbage file named .zarr", "cannot read scan store")
def _(m, tmp):
    path = tmp / "file.zarr"
    path.write_bytes(os.urandom(256))
    return _run(path, tmp)


@case("run", "empty directory", "cannot read scan store")
def _(m, tmp):
    path = tmp / "empty.zarr"
    path.mkdir()
    return _run(path, tmp)


@case("run", "truncated HDF5 scan", "cannot read scan store")
def _(m, tmp):
    path = tmp / "scan.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(100))
    return _run(path, tmp)


# run: bad options
@case("run", "unknown method", "unknown method 'nosuch'; expected one of:")
def _(m, tmp):
    return _run(m["good"], tmp, methods="bicubic,nosuch")


@case("run", "unknown dataset", "unknown dataset 'nosuch'; expected one of:")
def _(m, tmp):
    out = tmp / "out"
    return ["run", "-q", "-m", "bicubic", "-d", "nosuch", "-o", str(out)], out


@case("run", "unknown variant", "unknown variant '+X'", "expected +P")
def _(m, tmp):
    return _run(m["good"], tmp, methods="bicubic+X")


@case("run", "unbalanced bracket", "a method must be written NAME, NAME+P")
def _(m, tmp):
    return _run(m["good"], tmp, methods="bicubic[a=1")


@case("run", "column twice", "--methods gives column 'bicubic' twice")
def _(m, tmp):
    return _run(m["good"], tmp, methods="bicubic,bicubic")


@case("run", "malformed --set", "--set expects METHOD.KEY=VALUE")
def _(m, tmp):
    return _run(m["good"], tmp, "--set", "bicubic=3")


@case("run", "--set unknown key", "method 'bicubic' has no parameter 'sharpness'")
def _(m, tmp):
    return _run(m["good"], tmp, "--set", "bicubic.sharpness=3")


@case("run", "--set wrong type", "bicubic.a expects a float")
def _(m, tmp):
    return _run(m["good"], tmp, "--set", "bicubic.a=maybe")


@case("run", "--set for a method not run", "--set names method 'guided', which is not in --methods")
def _(m, tmp):
    return _run(m["good"], tmp, "--set", "guided.radius=2")


@case("run", "unknown preset", "no method in --methods has preset 'turbo'")
def _(m, tmp):
    return _run(m["good"], tmp, "--preset", "turbo")


@case("run", "unknown metric", "unknown metric 'psnrr'; expected one of:")
def _(m, tmp):
    return _run(m["good"], tmp, "--metrics", "psnr,psnrr")


@case("run", "malformed --seeds", "--seeds expects comma-separated integers (e.g. 0,1,2), found 'a,b'")
def _(m, tmp):
    return _run(m["good"], tmp, "--seeds", "a,b")


@case("run", "seed listed twice", "--seeds lists a seed twice")
def _(m, tmp):
    return _run(m["good"], tmp, "--seeds", "1,1")


@case("run", "negative method seed", "--seeds expects integers from 0 to 2**32 − 1, found -1")
def _(m, tmp):
    return _run(m["good"], tmp, "--seeds", "-1,0")


@case("run", "negative noise seed", "--noise-seed expects integers from 0 to 2**32 − 1, found -1")
def _(m, tmp):
    return _run(m["good"], tmp, "--protocol", "thinning", "--noise-seed", "-1")


@case("run", "negative misregister seed", "--misregister-seed expects integers from 0 to 2**32 − 1, found -5")
def _(m, tmp):
    return _run(m["good"], tmp, "--misregister", "0,1", "--misregister-seed", "-5")


@case("run", "--seed and --seeds", "give either --seed or --seeds")
def _(m, tmp):
    return _run(m["good"], tmp, "--seed", "1", "--seeds", "2,3")


@case("run", "unknown protocol", "--protocol expects full, reduced, acquisition, thinning (comma-separated), found wald")
def _(m, tmp):
    return _run(m["good"], tmp, "--protocol", "wald")


@case("run", "clean truth without one", "--truth clean needs a scan with a noise-free truth")
def _(m, tmp):
    return _run(m["good"], tmp, "--truth", "clean")


@case("run", "same dataset twice", "two datasets are both named 'good'")
def _(m, tmp):
    out = tmp / "out"
    return ["run", "-q", "-m", "bicubic", "-d", f"{m['good']},{m['good']}", "-o", str(out)], out


@case("run", "unusable dataset name", "dataset name 'a@b'", "cannot name a directory of the run")
def _(m, tmp):
    path = tmp / "a@b.zarr"
    shutil.copytree(m["good"], path)
    return _run(path, tmp)


@case("run", "--out is a file", "Invalid value for '--out'", usage=True)
def _(m, tmp):
    f = tmp / "out"
    f.write_text("precious")
    return ["run", "-q", "-m", "bicubic", "-d", str(m["good"]), "-o", str(f)], f


# import
def _import(m, tmp, source, *extra, rgb=None):
    out = tmp / "scan.zarr"
    return ["import", str(source), "--rgb", str(rgb or m["photo"]), "-o", str(out), *extra], out


def _folder(m, tmp):
    folder = tmp / "maps"
    shutil.copytree(m["folder"], folder)
    return folder


@case("import", "missing source", "does not exist; expected a folder of element-map images")
def _(m, tmp):
    return _import(m, tmp, tmp / "nothere")


@case("import", "folder without maps", "expected element-map images (.tif, .tiff, .png), one per element, found none")
def _(m, tmp):
    (tmp / "empty").mkdir()
    return _import(m, tmp, tmp / "empty")


@case("import", "unknown element label", "element map 'Qq_Z.tif'")
def _(m, tmp):
    import tifffile

    folder = _folder(m, tmp)
    tifffile.imwrite(folder / "Qq_Z.tif", np.zeros((SIZE, SIZE), np.uint16))
    return _import(m, tmp, folder)


@case("import", "duplicate element labels", "expected one map per element line, found several for Pb_L")
def _(m, tmp):
    folder = _folder(m, tmp)
    shutil.copy(folder / "Pb_L.tif", folder / "Pb-L.tif")
    return _import(m, tmp, folder)


@case("import", "maps of different sizes", "expected element maps of one size, found different sizes")
def _(m, tmp):
    import tifffile

    folder = _folder(m, tmp)
    tifffile.imwrite(folder / "Cu_K.tif", np.zeros((SIZE, SIZE - 4), np.uint16))
    return _import(m, tmp, folder)


@case("import", "truncated TIFF", "declares 2.0 KiB of data, but", "Hg_L.tif' holds 512 B")
def _(m, tmp):
    folder = _folder(m, tmp)
    data = (folder / "Hg_L.tif").read_bytes()
    (folder / "Hg_L.tif").write_bytes(data[: len(data) // 3])
    return _import(m, tmp, folder)


@case("import", "false-colour map", "found a 3-channel colour image")
def _(m, tmp):
    folder = _folder(m, tmp)
    (folder / "Cu_K.tif").unlink()
    rng = np.random.default_rng(0)
    _png(folder / "Cu_K.png", rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    return _import(m, tmp, folder)


@case("import", "missing photograph", "photograph", "does not exist; expected an RGB photograph")
def _(m, tmp):
    return _import(m, tmp, m["folder"], rgb=tmp / "nophoto.jpg")


@case("import", "grey photograph", "found 1 channel (grey)")
def _(m, tmp):
    return _import(m, tmp, m["folder"], rgb=_png(tmp / "grey.png", np.zeros((SIZE, SIZE), np.uint8)))


@case("import", "truncated JPEG", "cannot read photograph")
def _(m, tmp):
    from PIL import Image

    path = tmp / "photo.jpg"
    Image.fromarray(np.full((64, 64, 3), 100, np.uint8)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:200])
    return _import(m, tmp, m["folder"], rgb=path)


@case("import", "photograph out of range", "expected float values in [0, 1], found range")
def _(m, tmp):
    import tifffile

    path = tmp / "photo.tif"
    tifffile.imwrite(path, np.full((SIZE, SIZE, 3), 3.0, np.float32), photometric="rgb")
    return _import(m, tmp, m["folder"], rgb=path)


@case("import", "NaN photograph", "expected float values in [0, 1], found range")
def _(m, tmp):
    import tifffile

    path = tmp / "photo.tif"
    a = np.full((SIZE, SIZE, 3), 0.5, np.float32)
    a[0, 0, 0] = np.nan
    tifffile.imwrite(path, a, photometric="rgb")
    return _import(m, tmp, m["folder"], rgb=path)


@case("import", "corrupt HDF5", "cannot read HDF5 file")
def _(m, tmp):
    path = tmp / "maps.h5"
    path.write_bytes(os.urandom(512))
    return _import(m, tmp, path)


@case("import", "truncated HDF5", "cannot read HDF5 file")
def _(m, tmp):
    import h5py

    path = tmp / "maps.h5"
    with h5py.File(path, "w") as f:
        f["xrfmap/detsum/xrf_fit"] = np.ones((2, 64, 64), np.float32)
        f["xrfmap/detsum/xrf_fit_name"] = np.array([b"Pb_L", b"Ca_K"])
    path.write_bytes(path.read_bytes()[:1500])
    return _import(m, tmp, path)


@case("import", "HDF5 without PyXRF maps", "expected PyXRF datasets 'xrfmap/detsum/xrf_fit'")
def _(m, tmp):
    import h5py

    path = tmp / "maps.h5"
    with h5py.File(path, "w") as f:
        f["something"] = np.ones(3)
    return _import(m, tmp, path)


@case("import", "HDF5 names disagree with maps", "expected xrf_fit (element, y, x) with one name per element")
def _(m, tmp):
    import h5py

    path = tmp / "maps.h5"
    with h5py.File(path, "w") as f:
        f["xrfmap/detsum/xrf_fit"] = np.ones((3, 16, 16), np.float32)
        f["xrfmap/detsum/xrf_fit_name"] = np.array([b"Pb_L", b"Ca_K"])
    return _import(m, tmp, path)


@case("import", "HDF5 without element lines", "expected element lines such as 'Pb_L' among the channels")
def _(m, tmp):
    import h5py

    path = tmp / "maps.h5"
    with h5py.File(path, "w") as f:
        f["xrfmap/detsum/xrf_fit"] = np.ones((2, 16, 16), np.float32)
        f["xrfmap/detsum/xrf_fit_name"] = np.array([b"compton", b"elastic"])
    return _import(m, tmp, path)


def _rpl(tmp, cube=None):
    from rsciio.ripple import file_writer

    cube = np.ones((8, 8, 512), np.int32) if cube is None else cube
    h, w, n = cube.shape
    axes = [dict(name="height", size=h, scale=1.0, offset=0.0, units=None, navigate=True, index_in_array=0),
            dict(name="width", size=w, scale=1.0, offset=0.0, units=None, navigate=True, index_in_array=1),
            dict(name="Energy", size=n, scale=0.02, offset=0.0, units="keV", navigate=False,
                 index_in_array=2)]
    path = tmp / "cube.rpl"
    file_writer(str(path), {"data": cube, "axes": axes,
                            "metadata": {"General": {"title": "cube"}, "Signal": {"signal_type": ""}}})
    return path


@case("import", "truncated RAW", "declares 128.0 KiB of data, but", "cube.raw' holds 1000 B")
def _(m, tmp):
    path = _rpl(tmp)
    raw = path.with_suffix(".raw")
    raw.write_bytes(raw.read_bytes()[:1000])
    return _import(m, tmp, path, "--elements", "Fe,Cu")


@case("import", "garbage RPL header", "cannot read spectral cube")
def _(m, tmp):
    path = _rpl(tmp)
    path.write_text("key\tvalue\nwidth\tnot-a-number\n")
    return _import(m, tmp, path, "--elements", "Fe,Cu")


@case("import", "RAW without its header", "expected an .rpl header next to the .raw file")
def _(m, tmp):
    path = tmp / "lonely.raw"
    path.write_bytes(os.urandom(64))
    return _import(m, tmp, path, "--elements", "Fe")


@case("import", "cube without --elements", "a raw spectral cube needs the lines to map: expected --elements")
def _(m, tmp):
    return _import(m, tmp, _rpl(tmp))


@case("import", "unknown line in --elements", "--elements:")
def _(m, tmp):
    return _import(m, tmp, _rpl(tmp), "--elements", "Fe,Qq")


@case("import", "line outside the energy range", "lies outside the calibrated energy range")
def _(m, tmp):
    return _import(m, tmp, _rpl(tmp, np.ones((8, 8, 64), np.int32)), "--elements", "Pb_L")


@case("import", "malformed --calibration", "--calibration expects OFFSET,GAIN")
def _(m, tmp):
    return _import(m, tmp, _rpl(tmp), "--elements", "Fe", "--calibration", "zero")


@case("import", "--scale without --lr", "--scale applies with --lr or --short-dwell only")
def _(m, tmp):
    return _import(m, tmp, m["folder"], "--scale", "4")


@case("import", "--lr with --short-dwell", "found both")
def _(m, tmp):
    return _import(m, tmp, m["folder"], "--lr", "--short-dwell")


@case("import", "--short-dwell --scale 1", "expected at least 2")
def _(m, tmp):
    return _import(m, tmp, m["folder"], "--short-dwell", "--scale", "1")


@case("import", "--lr with a small photograph", "--lr: expected a photograph at least twice the size of the maps")
def _(m, tmp):
    return _import(m, tmp, m["folder"], "--lr")


@case("import", "unsupported file", "expected a folder of element-map images, a .rpl/.raw/.bcf spectral cube")
def _(m, tmp):
    path = tmp / "notes.txt"
    path.write_text("hello")
    return _import(m, tmp, path)


@case("import", "--out exists as a file", "exists and is a file, not a scan store this tool wrote; expected a new path")
def _(m, tmp):
    out = tmp / "scan.zarr"
    out.write_text("precious")
    return ["import", str(m["folder"]), "--rgb", str(m["photo"]), "-o", str(out)], out


# simulate
def _sim(tmp, *extra):
    out = tmp / "sim.zarr"
    return ["simulate", "-o", str(out), *extra], out


@case("simulate", "unknown preset", "sim-demo")
def _(m, tmp):
    return _sim(tmp, "--preset", "sim-nothing")


@case("simulate", "size 0", "--size must be at least 16 pixels, found 0")
def _(m, tmp):
    return _sim(tmp, "--size", "0")


@case("simulate", "negative size", "--size must be at least 16 pixels, found -64")
def _(m, tmp):
    return _sim(tmp, "--size", "-64")


@case("simulate", "negative dwell", "--dwell-ms must be a positive time per pixel, found -1")
def _(m, tmp):
    return _sim(tmp, "--dwell-ms", "-1")


@case("simulate", "negative seed", "--seed must be a non-negative integer, found -1")
def _(m, tmp):
    return _sim(tmp, "--seed", "-1")


@case("simulate", "seed not an integer", "Invalid value for '--seed'", usage=True)
def _(m, tmp):
    return _sim(tmp, "--seed", "x")


# export
def _export(run, tmp, *extra):
    out = tmp / "model.onnx"
    return ["export", "--run", str(run), "-o", str(out), *extra], out


@case("export", "not a run directory", "is not a run directory")
def _(m, tmp):
    (tmp / "empty").mkdir()
    return _export(tmp / "empty", tmp)


@case("export", "method without export", "method 'bicubic' cannot be exported to ONNX")
def _(m, tmp):
    return _export(m["run"], tmp, "-m", "bicubic")


@case("export", "dataset not in the run", "has no dataset 'nosuch'")
def _(m, tmp):
    return _export(m["run"], tmp, "-d", "nosuch")


@case("export", "column not run", "no cell 'proposed' on dataset 'good'", "columns there: bicubic")
def _(m, tmp):
    return _export(m["run"], tmp)


@case("export", "corrupt cell.json", "cell.json", needs_model=True)
def _(m, tmp):
    run = tmp / "trained"
    shutil.copytree(m["model"]["run"], run)
    (run / "cells/lr/proposed/seed-0/cell.json").write_text("{not json")
    return _export(run, tmp)


@case("export", "truncated weights", "generator", needs_model=True)
def _(m, tmp):
    run = tmp / "trained"
    shutil.copytree(m["model"]["run"], run)
    w = next((run / "cells/lr/proposed/seed-0/work").glob("*.pt"))
    w.write_bytes(w.read_bytes()[:100])
    return _export(run, tmp)


# infer
def _infer(model, scan, tmp, *extra):
    out = tmp / "sr.zarr"
    return ["infer", str(model), str(scan), "-o", str(out), "-q", *extra], out


@case("infer", "missing model", "does not exist (expected an .onnx file")
def _(m, tmp):
    return _infer(tmp / "none.onnx", m["lr"], tmp)


@case("infer", "garbage model", "cannot read model", "expected an ONNX file")
def _(m, tmp):
    path = tmp / "junk.onnx"
    path.write_bytes(os.urandom(300))
    return _infer(path, m["lr"], tmp)


@case("infer", "truncated model", "cannot read model", needs_model=True)
def _(m, tmp):
    path = tmp / "half.onnx"
    data = m["model"]["path"].read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return _infer(path, m["lr"], tmp)


@case("infer", "ONNX model of something else", "lacks metadata")
def _(m, tmp):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp / "identity.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return _infer(path, m["lr"], tmp)


@case("infer", "elements disagree with the model", "scan elements do not match the model", needs_model=True)
def _(m, tmp):
    d = toy_scene(SIZE, 3, seed=4)
    scan = mb.save_scan(mb.make_scan(rgb=d["rgb"], elements=["Fe_K", "Hg_L", "Cu_K"],
                                     maps_lr=mb.block_mean(d["maps"], 4)), tmp / "other.zarr")
    return _infer(m["model"]["path"], scan, tmp)


@case("infer", "element order differs", "scan elements do not match the model", needs_model=True)
def _(m, tmp):
    d = toy_scene(SIZE, 3, seed=4)
    scan = mb.save_scan(mb.make_scan(rgb=d["rgb"], elements=list(reversed(d["elements"])),
                                     maps_lr=mb.block_mean(d["maps"], 4)), tmp / "other.zarr")
    return _infer(m["model"]["path"], scan, tmp)


@case("infer", "scale disagrees with the model", "scan scale does not match the model", needs_model=True)
def _(m, tmp):
    d = toy_scene(SIZE, 3, seed=4)
    scan = mb.save_scan(mb.make_scan(rgb=d["rgb"], elements=d["elements"],
                                     maps_lr=mb.block_mean(d["maps"], 2)), tmp / "other.zarr")
    return _infer(m["model"]["path"], scan, tmp)


@case("infer", "missing scan", "does not exist or is not a Zarr store", needs_model=True)
def _(m, tmp):
    return _infer(m["model"]["path"], tmp / "nothere.zarr", tmp)


@case("infer", "corrupt scan", "cannot read scan", needs_model=True)
def _(m, tmp):
    bad = tmp / "bad.zarr"
    bad.mkdir()
    (bad / ".zgroup").write_text("[")
    return _infer(m["model"]["path"], bad, tmp)


@case("infer", "truncated chunk in the scan", "cannot read scan", "its Blosc header declares", needs_model=True)
def _(m, tmp):
    path = tmp / "s.zarr"
    shutil.copytree(m["lr"], path)
    chunk = next(p for p in sorted((path / "maps_lr").iterdir()) if not p.name.startswith("."))
    chunk.write_bytes(chunk.read_bytes()[:-7])
    return _infer(m["model"]["path"], path, tmp)


@case("infer", "NaN in the scan", "'maps_lr' must be finite, found 1 NaN/Inf values", needs_model=True, notes=True)
def _(m, tmp):
    d = toy_scene(SIZE, 3, seed=4)
    lr = mb.block_mean(d["maps"], 4)
    lr[1, 2, 2] = np.nan
    path = tmp / "nan.zarr"
    xr.Dataset({"maps_lr": (("element", "y_lr", "x_lr"), lr), "rgb": (("band", "y", "x"), d["rgb"])},
               coords={"element": d["elements"], "band": ["R", "G", "B"]}).to_zarr(path, zarr_format=2)
    return _infer(m["model"]["path"], path, tmp)


@case("infer", "negative tile", "--tile expects an integer ≥ 0, found -8", needs_model=True)
def _(m, tmp):
    return _infer(m["model"]["path"], m["lr"], tmp, "--tile", "-8")


@case("infer", "output is the input", "is the input", "expected an output path apart from the inputs", needs_model=True)
def _(m, tmp):
    scan = tmp / "in.zarr"
    shutil.copytree(m["lr"], scan)
    return ["infer", str(m["model"]["path"]), str(scan), "-o", str(scan), "-q"], scan


# save-maps
def _save(source, tmp, *extra):
    out = tmp / "maps-out"
    return ["save-maps", str(source), "-o", str(out), *extra], out


@case("save-maps", "not a run nor a store", "is neither a run directory (results.csv, cells/) nor a Zarr store")
def _(m, tmp):
    (tmp / "empty").mkdir()
    return _save(tmp / "empty", tmp)


@case("save-maps", "missing source", "does not exist")
def _(m, tmp):
    return _save(tmp / "nothere", tmp)


@case("save-maps", "unknown dataset", "nosuch")
def _(m, tmp):
    return _save(m["run"], tmp, "-d", "nosuch", "-m", "bicubic")


@case("save-maps", "unknown column", "guided")
def _(m, tmp):
    return _save(m["run"], tmp, "-m", "guided")


@case("save-maps", "unknown protocol", "reduced")
def _(m, tmp):
    return _save(m["run"], tmp, "-m", "bicubic", "--protocol", "reduced")


@case("save-maps", "store without maps", "expected a variable 'maps' with dims (element, y, x)")
def _(m, tmp):
    path = tmp / "s.zarr"
    xr.Dataset({"other": (("a",), np.ones(3))}).to_zarr(path, zarr_format=2)
    return _save(path, tmp)


@case("save-maps", "corrupt store", "cannot open")
def _(m, tmp):
    bad = tmp / "bad.zarr"
    bad.mkdir()
    (bad / ".zgroup").write_text("{")
    return _save(bad, tmp)


@case("save-maps", "unknown format", "Invalid value for '--format'", usage=True)
def _(m, tmp):
    return _save(m["run"], tmp, "-m", "bicubic", "--format", "bmp")


# report
def _report(run, tmp, *extra):
    out = tmp / "report.html"
    return ["report", str(run), "-o", str(out), *extra], out


@case("report", "not a run directory", "results.csv")
def _(m, tmp):
    (tmp / "empty").mkdir()
    return _report(tmp / "empty", tmp)


@case("report", "corrupt results.csv", "results.csv")
def _(m, tmp):
    run = tmp / "run"
    shutil.copytree(m["run"], run)
    (run / "results.csv").write_text("dataset,method\n\x00\x01,,,\n")
    return _report(run, tmp)


@case("report", "corrupt manifest", "manifest.json")
def _(m, tmp):
    run = tmp / "run"
    shutil.copytree(m["run"], run)
    (run / "manifest.json").write_text("{\"timings\": [")
    return _report(run, tmp)


@case("report", "unknown element", "in no dataset of the run; expected one of")
def _(m, tmp):
    return _report(m["run"], tmp, "--element", "Au_M")


@case("report", "malformed crop", "y0:y1,x0:x1")
def _(m, tmp):
    return _report(m["run"], tmp, "--crop", "1-5")


@case("report", "empty crop", "crop")
def _(m, tmp):
    return _report(m["run"], tmp, "--crop", "10:5,0:8")


# ablate
def _ablate(dataset, tmp, *extra):
    out = tmp / "abl"
    return ["ablate", "-q", "-d", str(dataset), "-o", str(out), *extra], out


@case("ablate", "unknown dataset", "unknown dataset 'nosuch'")
def _(m, tmp):
    return _ablate("nosuch", tmp)


@case("ablate", "unknown preset", "method 'proposed' has no preset 'turbo'")
def _(m, tmp):
    return _ablate(m["good"], tmp, "--preset", "turbo")


@case("ablate", "scan without ground truth", "needs a scan with ground truth")
def _(m, tmp):
    return _ablate(m["lr"], tmp)


@case("ablate", "corrupt store", "cannot read scan store")
def _(m, tmp):
    bad = tmp / "bad.zarr"
    bad.mkdir()
    (bad / ".zgroup").write_text("{")
    return _ablate(bad, tmp)


# rerun (the reproduction helper of issue 13)
@case("rerun", "unknown column", "has no column 'guided'; expected one of: bicubic")
def _(m, tmp):
    return ["rerun", str(m["run"]), "-d", "good", "-m", "guided"], None


@case("rerun", "not a run directory", "is not a run directory")
def _(m, tmp):
    (tmp / "empty").mkdir()
    return ["rerun", str(tmp / "empty"), "-d", "good", "-m", "bicubic"], None


# table
@case("table", "not a run directory", "results.csv")
def _(m, tmp):
    (tmp / "empty").mkdir()
    return ["table", str(tmp / "empty")], None


# info, new-plugin, table --metrics (issue 24)
@case("info", "unknown name", "info: expected the name of a registered method, dataset or metric, found 'bicubc'", "did you mean bicubic")
def _(m, tmp):
    return ["info", "bicubc"], None


@case("info", "wrong kind", "expected the name of a registered metric, found 'bicubic'")
def _(m, tmp):
    return ["info", "bicubic", "--kind", "metrics"], None


@case("info", "corrupt store", "cannot read scan store")
def _(m, tmp):
    bad = tmp / "bad.zarr"
    bad.mkdir()
    (bad / ".zgroup").write_text("{")
    return ["info", str(bad)], None


@case("new-plugin", "folder with files", "expected -o to name a new or empty folder")
def _(m, tmp):
    out = tmp / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    return ["new-plugin", "my-sr", "-o", str(out)], out


@case("new-plugin", "bad name", "expected a distribution name of lower-case letters", "'My SR'")
def _(m, tmp):
    return ["new-plugin", "My SR", "-o", str(tmp / "o")], tmp / "o"


@case("table", "unknown metric", "--metrics: expected metrics of this run", "found 'nope'")
def _(m, tmp):
    return ["table", str(m["run"]), "--metrics", "psnr,nope"], None


@case("run", "a parameter another overrides", "proposed.alpha2=0.0 would not be used: "
      "adv_calibration=0.1 overrides it")
def _(m, tmp):
    return _run(m["good"], tmp, "--preset", "fast", "--set", "proposed.alpha2=0", methods="proposed")


# import --control-points / --homography / --rotate (issue 24)
def _points(tmp, rows, header="photo_x,photo_y,map_x,map_y"):
    path = tmp / "points.csv"
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


_GOOD_POINTS = [(1, 1, 1, 1), (30, 2, 30, 2), (2, 29, 2, 29), (28, 30, 28, 30), (15, 16, 15, 16)]


@case("import", "control points on a line", "expected at least 4 point pairs not all on one line")
def _(m, tmp):
    pts = _points(tmp, [(i, 2 * i, i, 2 * i) for i in range(1, 6)])
    return _import(m, tmp, _folder(m, tmp), "--control-points", str(pts))


@case("import", "three of four control points on a line", "do not determine a homography",
      "no three of any four on one line")
def _(m, tmp):
    pts = _points(tmp, [(0, 0, 0, 0), (10, 10, 10, 10), (20, 20, 20, 20), (25, 3, 25, 3)])
    return _import(m, tmp, _folder(m, tmp), "--control-points", str(pts))


@case("import", "too few control points", "expected at least 4 point pairs", "found 3")
def _(m, tmp):
    pts = _points(tmp, _GOOD_POINTS[:3])
    return _import(m, tmp, _folder(m, tmp), "--control-points", str(pts))


@case("import", "control points without the columns", "missing map_x, map_y")
def _(m, tmp):
    pts = _points(tmp, _GOOD_POINTS, header="photo_x,photo_y,x,y")
    return _import(m, tmp, _folder(m, tmp), "--control-points", str(pts))


@case("import", "control point not a number", "line 3: expected four numbers")
def _(m, tmp):
    pts = _points(tmp, [_GOOD_POINTS[0], ("1,5", "x")] + _GOOD_POINTS[1:])
    return _import(m, tmp, _folder(m, tmp), "--control-points", str(pts))


@case("import", "control points file missing", "--control-points", "does not exist")
def _(m, tmp):
    return _import(m, tmp, _folder(m, tmp), "--control-points", str(tmp / "none.csv"))


@case("import", "control points in a binary file", "cannot read", "as text")
def _(m, tmp):
    (tmp / "points.csv").write_bytes(b"\xff\xfe\x00\x81" * 20)
    return _import(m, tmp, _folder(m, tmp), "--control-points", str(tmp / "points.csv"))


@case("import", "homography of the wrong shape", "expected a 3×3 matrix", "shape (2, 3)")
def _(m, tmp):
    (tmp / "h.txt").write_text("1 0 0\n0 1 0\n")
    return _import(m, tmp, _folder(m, tmp), "--homography", str(tmp / "h.txt"))


@case("import", "singular homography", "expected an invertible 3×3 matrix")
def _(m, tmp):
    (tmp / "h.txt").write_text("1 0 0\n2 0 0\n0 0 1\n")
    return _import(m, tmp, _folder(m, tmp), "--homography", str(tmp / "h.txt"))


@case("import", "homography not numbers", "--homography", "expected a 3×3 matrix")
def _(m, tmp):
    (tmp / "h.txt").write_text("a b c\n")
    return _import(m, tmp, _folder(m, tmp), "--homography", str(tmp / "h.txt"))


@case("import", "two registrations", "expected one way to register the photograph")
def _(m, tmp):
    pts = _points(tmp, _GOOD_POINTS)
    return _import(m, tmp, _folder(m, tmp), "--control-points", str(pts), "--register")


@case("import", "rotation not a right angle", "--rotate", usage=True)
def _(m, tmp):
    return _import(m, tmp, _folder(m, tmp), "--rotate", "45")


# --- issue 25: nothing a user owns is replaced, every entry point validates like run -------------

def _documents(tmp: Path) -> Path:
    """A folder of the user's own files, given as -o by mistake."""
    docs = tmp / "Documents"
    (docs / "letters").mkdir(parents=True)
    (docs / "thesis.txt").write_text("irreplaceable")
    (docs / "letters" / "a.txt").write_text("also mine")
    return docs


def _holder(m, tmp: Path, which: str = "good") -> tuple[Path, Path]:
    """A folder that holds a copy of an input (scan or run directory), and the copy."""
    holder = tmp / "project"
    holder.mkdir()
    shutil.copytree(m[which], holder / m[which].name)
    return holder, holder / m[which].name


OWNED = "this tool wrote"
HOLDS = "holds the input"


# run
@case("run", "-o a folder of user files", OWNED, "a folder of 2 other entries")
def _(m, tmp):
    docs = _documents(tmp)
    return ["run", "-q", "-m", "bicubic", "-d", str(m["good"]), "-o", str(docs)], docs


@case("run", "-o the folder holding the input", HOLDS)
def _(m, tmp):
    holder, scan = _holder(m, tmp)
    return ["run", "-q", "-m", "bicubic", "-d", str(scan), "-o", str(holder)], holder


@case("run", "-o inside the input store", "lies inside the input")
def _(m, tmp):
    _, scan = _holder(m, tmp)
    return ["run", "-q", "-m", "bicubic", "-d", str(scan), "-o", str(scan / "out")], scan


@case("run", "-o the input store itself", "is the input")
def _(m, tmp):
    _, scan = _holder(m, tmp)
    return ["run", "-q", "-m", "bicubic", "-d", str(scan), "-o", str(scan)], scan


@case("run", "-o name too long", "cannot write", "too long")
def _(m, tmp):
    return ["run", "-q", "-m", "bicubic", "-d", str(m["good"]), "-o", str(tmp / ("r" * 300))], None


# import
@case("import", "-o a folder of user files", OWNED)
def _(m, tmp):
    docs = _documents(tmp)
    return ["import", str(m["folder"]), "--rgb", str(m["photo"]), "-o", str(docs)], docs


@case("import", "-o the source folder", "is the input")
def _(m, tmp):
    folder = _folder(m, tmp)
    return ["import", str(folder), "--rgb", str(m["photo"]), "-o", str(folder)], folder


@case("import", "-o the folder holding the photograph", HOLDS)
def _(m, tmp):
    holder = tmp / "photos"
    holder.mkdir()
    shutil.copy(m["photo"], holder / "photo.png")
    return ["import", str(m["folder"]), "--rgb", str(holder / "photo.png"), "-o", str(holder)], holder


@case("import", "-o name too long", "cannot write", "too long")
def _(m, tmp):
    return ["import", str(m["folder"]), "--rgb", str(m["photo"]), "-o", str(tmp / ("s" * 300))], None


# simulate
@case("simulate", "-o a folder of user files", OWNED)
def _(m, tmp):
    docs = _documents(tmp)
    return ["simulate", "--size", "32", "-o", str(docs)], docs


@case("simulate", "-o a run directory (another kind of output)", "not a scan store this tool wrote")
def _(m, tmp):
    run = tmp / "run"
    shutil.copytree(m["run"], run)
    return ["simulate", "--size", "32", "-o", str(run)], run


@case("simulate", "-o name too long", "cannot write", "too long")
def _(m, tmp):
    return ["simulate", "--size", "32", "-o", str(tmp / ("z" * 300))], None


# export
@case("export", "-o a user's file", "exists and is not a ONNX model of maxrf-bench this tool wrote",
      needs_model=True)
def _(m, tmp):
    docs = _documents(tmp)
    return ["export", "--run", str(m["model"]["run"]), "-o", str(docs / "thesis.txt")], docs


@case("export", "-o a file of the run (an input)", "not a ONNX model of maxrf-bench", needs_model=True)
def _(m, tmp):
    run = tmp / "trained"
    shutil.copytree(m["model"]["run"], run)
    return ["export", "--run", str(run), "-o", str(next(run.rglob("cell.json")))], run


# infer
@case("infer", "-o a folder of user files", OWNED, needs_model=True)
def _(m, tmp):
    docs = _documents(tmp)
    return _infer(m["model"]["path"], m["lr"], tmp)[0][:-3] + ["-o", str(docs), "-q"], docs


@case("infer", "-o the folder holding the input scan", HOLDS, needs_model=True)
def _(m, tmp):
    holder, scan = _holder(m, tmp, "lr")
    return ["infer", str(m["model"]["path"]), str(scan), "-o", str(holder), "-q"], holder


@case("infer", "-o an imported scan (another kind of output)", "not a maxrf-infer output store",
      needs_model=True)
def _(m, tmp):
    other = tmp / "other.zarr"
    shutil.copytree(m["good"], other)
    return ["infer", str(m["model"]["path"]), str(m["lr"]), "-o", str(other), "-q"], other


@case("infer", "-o name too long", "cannot write", "too long", needs_model=True, notes=True)
def _(m, tmp):
    return ["infer", str(m["model"]["path"]), str(m["lr"]), "-o", str(tmp / ("i" * 300)), "-q"], None


# save-maps
@case("save-maps", "-o a folder of user files", OWNED)
def _(m, tmp):
    docs = _documents(tmp)
    return ["save-maps", str(m["run"]), "-m", "bicubic", "-o", str(docs)], docs


@case("save-maps", "-o the folder holding the run", HOLDS)
def _(m, tmp):
    holder, run = _holder(m, tmp, "run")
    return ["save-maps", str(run), "-m", "bicubic", "-o", str(holder)], holder


@case("save-maps", "-o name too long", "cannot write", "too long")
def _(m, tmp):
    return ["save-maps", str(m["run"]), "-m", "bicubic", "-o", str(tmp / ("m" * 300))], None


# report
@case("report", "-o a folder of user files", OWNED)
def _(m, tmp):
    docs = _documents(tmp)
    return ["report", str(m["run"]), "-o", str(docs)], docs


@case("report", "-o a user's page", "not a maxrf-bench report page this tool wrote")
def _(m, tmp):
    docs = _documents(tmp)
    (docs / "index.html").write_text("<html><title>my page</title></html>")
    return ["report", str(m["run"]), "-o", str(docs / "index.html")], docs


@case("report", "-o beside a folder of user files named like its assets", "the report's folder",
      OWNED)
def _(m, tmp):
    docs = _documents(tmp)
    (docs / "page_files").mkdir()
    (docs / "page_files" / "figure.png").write_bytes(b"mine")
    return ["report", str(m["run"]), "-o", str(docs / "page.html")], docs


@case("report", "-o the folder holding the run", HOLDS)
def _(m, tmp):
    holder, run = _holder(m, tmp, "run")
    return ["report", str(run), "-o", str(holder)], holder


@case("report", "-o name too long", "cannot write", "too long")
def _(m, tmp):
    return ["report", str(m["run"]), "-o", str(tmp / ("h" * 300 + ".html"))], None


# ablate
@case("ablate", "-o a folder of user files", "not a ablation folder this tool wrote")
def _(m, tmp):
    docs = _documents(tmp)
    return ["ablate", "-q", "-d", str(m["good"]), "-o", str(docs)], docs


@case("ablate", "-o the folder holding the input", HOLDS)
def _(m, tmp):
    holder, scan = _holder(m, tmp)
    return ["ablate", "-q", "-d", str(scan), "-o", str(holder)], holder


# malformed scan attributes, an LR-only scan without elements: refused before any work
def _attr_scan(m, tmp, **attrs) -> Path:
    path = tmp / "attrs.zarr"
    shutil.copytree(m["good"], path)
    z = json.loads((path / ".zattrs").read_text())
    z.update(attrs)
    (path / ".zattrs").write_text(json.dumps(z))
    (path / ".zmetadata").unlink(missing_ok=True)
    return path


@case("run", "text pixel_size_mm", "attribute pixel_size_mm must be a positive number of millimetres, found 'abc'")
def _(m, tmp):
    return _run(_attr_scan(m, tmp, pixel_size_mm="abc"), tmp)


@case("run", "negative pixel_size_mm", "attribute pixel_size_mm must be a positive number", "found -0.1")
def _(m, tmp):
    return _run(_attr_scan(m, tmp, pixel_size_mm=-0.1), tmp)


@case("run", "text scale attribute", "attribute scale must be a positive integer, found 'four'")
def _(m, tmp):
    path = tmp / "lr.zarr"
    shutil.copytree(m["lr"], path)
    z = json.loads((path / ".zattrs").read_text())
    z["scale"] = "four"
    (path / ".zattrs").write_text(json.dumps(z))
    (path / ".zmetadata").unlink(missing_ok=True)
    return _run(path, tmp)


@case("run", "fractional scale attribute", "attribute scale must be a positive integer, found 2.5")
def _(m, tmp):
    return _run(_attr_scan(m, tmp, scale=2.5), tmp)


@case("run", "LR-only scan without elements", "'maps_lr' has no element")
def _(m, tmp):
    d = toy_scene(SIZE, 3, seed=4)
    path = tmp / "noel.zarr"
    xr.Dataset({"rgb": (("band", "y", "x"), d["rgb"]),
                "maps_lr": (("element", "y_lr", "x_lr"), np.zeros((0, 8, 8), np.float32))},
               coords={"element": np.array([], dtype=str), "band": ["R", "G", "B"]},
               attrs={"schema_version": 1}).to_zarr(path, zarr_format=2)
    return _run(path, tmp)


@case("infer", "text scale attribute", "attribute scale must be a positive integer, found 'four'",
      needs_model=True)
def _(m, tmp):
    path = tmp / "lr.zarr"
    shutil.copytree(m["lr"], path)
    z = json.loads((path / ".zattrs").read_text())
    z["scale"] = "four"
    (path / ".zattrs").write_text(json.dumps(z))
    (path / ".zmetadata").unlink(missing_ok=True)
    return _infer(m["model"]["path"], path, tmp)


@case("infer", "photograph in 0..255", "'rgb' must lie in [0, 1], found range", needs_model=True,
      notes=True)
def _(m, tmp):
    path = tmp / "lr255.zarr"
    shutil.copytree(m["lr"], path)
    ds = xr.open_zarr(path).load()
    ds["rgb"] = ds["rgb"] * 255
    ds.to_zarr(tmp / "lr255b.zarr", zarr_format=2)
    return _infer(m["model"]["path"], tmp / "lr255b.zarr", tmp)


@case("infer", "negative counts", "'maps_lr' must be non-negative counts, found 1 negative values",
      needs_model=True, notes=True)
def _(m, tmp):
    ds = xr.open_zarr(m["lr"]).load()
    ds["maps_lr"][0, 1, 1] = -5.0
    ds.to_zarr(tmp / "neg.zarr", zarr_format=2)
    return _infer(m["model"]["path"], tmp / "neg.zarr", tmp)


@case("infer", "text photograph", "'rgb' must be numeric", needs_model=True)
def _(m, tmp):
    ds = xr.open_zarr(m["lr"]).load()
    ds["rgb"] = ds["rgb"].astype(str)
    ds.to_zarr(tmp / "txt.zarr", zarr_format=2)
    return _infer(m["model"]["path"], tmp / "txt.zarr", tmp)


# malformed ONNX metadata: refused when the model is loaded
def _model_with(m, tmp, **meta) -> Path:
    import onnx

    model = onnx.load(str(m["model"]["path"]))
    for p in model.metadata_props:
        if p.key in meta:
            p.value = meta[p.key]
    path = tmp / "edited.onnx"
    onnx.save(model, str(path))
    return path


@case("infer", "text scale metadata", "metadata 'scale' must be an integer ≥ 1, found 'four'", needs_model=True)
def _(m, tmp):
    return _infer(_model_with(m, tmp, scale='"four"'), m["lr"], tmp)


@case("infer", "zero scale metadata", "metadata 'scale' must be an integer ≥ 1, found 0", needs_model=True)
def _(m, tmp):
    return _infer(_model_with(m, tmp, scale="0"), m["lr"], tmp)


@case("infer", "normalisation not a mapping", "metadata 'normalisation' must be", needs_model=True)
def _(m, tmp):
    return _infer(_model_with(m, tmp, normalisation='[1, 2]'), m["lr"], tmp)


@case("infer", "normalisation of text", "'normalisation' offset and span must be lists of numbers",
      needs_model=True)
def _(m, tmp):
    return _infer(_model_with(m, tmp, normalisation='{"offset": ["a", "b", "c"], "span": [1, 1, 1]}'),
                  m["lr"], tmp)


@case("infer", "zero span", "positive finite spans", needs_model=True)
def _(m, tmp):
    return _infer(_model_with(m, tmp, normalisation='{"offset": [0, 0, 0], "span": [1, 0, 1]}'),
                  m["lr"], tmp)


@case("infer", "negative halo_lr", "metadata 'halo_lr' must be an integer ≥ 0, found -2", needs_model=True)
def _(m, tmp):
    return _infer(_model_with(m, tmp, halo_lr="-2"), m["lr"], tmp)


@case("infer", "elements not a list", "metadata 'elements' must be a non-empty list", needs_model=True)
def _(m, tmp):
    return _infer(_model_with(m, tmp, elements='"Pb_L"'), m["lr"], tmp)


# run-directory files cut short or missing fields: validated when read
def _run_copy(m, tmp) -> Path:
    run = tmp / "runcopy"
    shutil.copytree(m["run"], run)
    return run


def _cut(path: Path, fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


@case("table", "truncated results.csv", "results.csv is corrupt: line")
def _(m, tmp):
    run = _run_copy(m, tmp)
    _cut(run / "results.csv", 0.6)
    return ["table", str(run)], None


@case("report", "truncated results.csv", "results.csv is corrupt: line")
def _(m, tmp):
    run = _run_copy(m, tmp)
    _cut(run / "results.csv", 0.6)
    return _report(run, tmp)


@case("report", "results.csv with text values", "field 'value': expected a number, found 'high'")
def _(m, tmp):
    run = _run_copy(m, tmp)
    lines = (run / "results.csv").read_text().splitlines()
    head, row = lines[0], lines[1].split(",")
    row[head.split(",").index("value")] = "high"
    (run / "results.csv").write_text("\n".join([head, ",".join(row), *lines[2:]]) + "\n")
    return _report(run, tmp)


@case("table", "results.csv with a text scan_time", "field 'scan_time': expected a number or nothing")
def _(m, tmp):
    run = _run_copy(m, tmp)
    lines = (run / "results.csv").read_text().splitlines()
    head, row = lines[0], lines[1].split(",")
    row[head.split(",").index("scan_time")] = "quarter"
    (run / "results.csv").write_text("\n".join([head, ",".join(row), *lines[2:]]) + "\n")
    return ["table", str(run)], None


@case("report", "manifest timings of the wrong type", "field 'timings[0]' must be an object")
def _(m, tmp):
    run = _run_copy(m, tmp)
    man = json.loads((run / "manifest.json").read_text())
    man["timings"] = ["oops"]
    (run / "manifest.json").write_text(json.dumps(man))
    return _report(run, tmp)


@case("rerun", "manifest cut short", "manifest.json", "JSONDecodeError")
def _(m, tmp):
    run = _run_copy(m, tmp)
    _cut(run / "manifest.json")
    return ["rerun", str(run), "-d", "good", "-m", "bicubic"], None


@case("rerun", "manifest column without params", "field 'columns.bicubic.params' is missing")
def _(m, tmp):
    run = _run_copy(m, tmp)
    man = json.loads((run / "manifest.json").read_text())
    del man["columns"]["bicubic"]["params"]
    (run / "manifest.json").write_text(json.dumps(man))
    return ["rerun", str(run), "-d", "good", "-m", "bicubic"], None


@case("rerun", "manifest inputs without operator", "field 'inputs.good.operator' is missing")
def _(m, tmp):
    run = _run_copy(m, tmp)
    man = json.loads((run / "manifest.json").read_text())
    del man["inputs"]["good"]["operator"]
    (run / "manifest.json").write_text(json.dumps(man))
    return ["rerun", str(run), "-d", "good", "-m", "bicubic"], None


@case("rerun", "cell.json cut short", "cell.json", "JSONDecodeError")
def _(m, tmp):
    run = _run_copy(m, tmp)
    _cut(next(run.glob("cells/good/bicubic/*/cell.json")))
    return ["rerun", str(run), "-d", "good", "-m", "bicubic"], None


@case("rerun", "cell.json without metrics", "field 'metrics' is missing")
def _(m, tmp):
    run = _run_copy(m, tmp)
    path = next(run.glob("cells/good/bicubic/*/cell.json"))
    meta = json.loads(path.read_text())
    del meta["metrics"]
    path.write_text(json.dumps(meta))
    return ["rerun", str(run), "-d", "good", "-m", "bicubic"], None


# bounded readers: declared sizes checked before anything is allocated
@case("import", "RPL header declaring a huge cube beside a tiny RAW", "declares 6.7 TiB of data",
      "holds 640 B")
def _(m, tmp):
    cube = tmp / "cube.rpl"
    (tmp / "cube.raw").write_bytes(bytes(640))
    cube.write_text("key\tvalue\nwidth\t30000\nheight\t30000\ndepth\t4096\noffset\t0\n"
                    "data-length\t2\ndata-type\tunsigned\nbyte-order\tlittle-endian\n"
                    "record-by\tvector\ndepth-scale\t0.01\ndepth-origin\t0\ndepth-units\tkeV\n")
    return _import(m, tmp, cube, "--elements", "Fe")


@case("rerun", "saved inputs without their normalisation", "field 'offset' is missing")
def _(m, tmp):
    run = _run_copy(m, tmp)
    store = next((run / "inputs").glob("*.zarr"))
    z = json.loads((store / ".zattrs").read_text())
    del z["offset"]
    (store / ".zattrs").write_text(json.dumps(z))
    (store / ".zmetadata").unlink(missing_ok=True)
    return ["rerun", str(run), "-d", "good", "-m", "bicubic"], None


@case("import", "negative --pixel-size", "attribute pixel_size_mm must be a positive number", "found -1.0")
def _(m, tmp):
    return _import(m, tmp, m["folder"], "--pixel-size", "-1")


@case("import", "NaN --pixel-size", "attribute pixel_size_mm must be a positive number", "found nan")
def _(m, tmp):
    return _import(m, tmp, m["folder"], "--pixel-size", "nan")


@case("run", "-o inside a file", "is a file, not a folder")
def _(m, tmp):
    docs = _documents(tmp)
    return ["run", "-q", "-m", "bicubic", "-d", str(m["good"]), "-o", str(docs / "thesis.txt" / "run")], docs


@case("save-maps", "-o inside a file", "is a file, not a folder")
def _(m, tmp):
    docs = _documents(tmp)
    return ["save-maps", str(m["run"]), "-m", "bicubic", "-o", str(docs / "thesis.txt" / "maps")], docs


@case("simulate", "-o inside a file", "is a file, not a folder")
def _(m, tmp):
    docs = _documents(tmp)
    return ["simulate", "--size", "32", "-o", str(docs / "thesis.txt" / "s.zarr")], docs


CAP = {"MAXRF_BENCH_MAX_IMPORT_BYTES": "1K"}
CAPPED = "one import may allocate"


@case("import", "TIFF maps above the import cap", "TIFF image", "Cu_K.tif", "4.0 KiB of memory",
      "1.0 KiB " + CAPPED, "MAXRF_BENCH_MAX_IMPORT_BYTES", env=CAP)
def _(m, tmp):
    tiny = _png(tmp / "tiny.png", np.zeros((4, 4, 3), np.uint8))  # 384 B: under the cap
    return _import(m, tmp, m["folder"], rgb=tiny)


@case("import", "photograph above the import cap", "photo.png' (32×32) would need 24.0 KiB",
      "1.0 KiB " + CAPPED, env=CAP)
def _(m, tmp):
    return _import(m, tmp, m["folder"], rgb=m["photo"])


@case("import", "RPL cube above the import cap", "the cube of 'cube.rpl' (8×8×512)", CAPPED,
      env={"MAXRF_BENCH_MAX_IMPORT_BYTES": "100K"})
def _(m, tmp):
    cube = tmp / "cube.rpl"
    (tmp / "cube.raw").write_bytes(bytes(8 * 8 * 512 * 2))
    cube.write_text("key\tvalue\nwidth\t8\nheight\t8\ndepth\t512\noffset\t0\n"
                    "data-length\t2\ndata-type\tunsigned\nbyte-order\tlittle-endian\n"
                    "record-by\tvector\ndepth-scale\t0.04\ndepth-origin\t0\ndepth-units\tkeV\n")
    return _import(m, tmp, cube, "--elements", "Fe")


@case("import", "HDF5 dataset above the import cap", "HDF5 dataset 'xrfmap/detsum/xrf_fit' (3, 64, 64)",
      CAPPED, env={"MAXRF_BENCH_MAX_IMPORT_BYTES": "16K"})
def _(m, tmp):
    import h5py

    path = tmp / "maps.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("xrfmap/detsum/xrf_fit", data=np.ones((3, 64, 64), np.float32),
                         compression="gzip")  # 48 KiB declared, a few hundred bytes stored
        f["xrfmap/detsum/xrf_fit_name"] = np.array([b"Pb_L", b"Ca_K", b"Hg_L"])
    return _import(m, tmp, path, rgb=_png(tmp / "tiny.png", np.zeros((4, 4, 3), np.uint8)))


@case("run", "scan store above the import cap", "scan store", "1.0 KiB " + CAPPED, env=CAP)
def _(m, tmp):
    return _run(m["good"], tmp)


@case("run", "malformed import cap", "MAXRF_BENCH_MAX_IMPORT_BYTES expects a positive number of bytes",
      env={"MAXRF_BENCH_MAX_IMPORT_BYTES": "lots"})
def _(m, tmp):
    return _run(m["good"], tmp)


@pytest.fixture
def runner():
    return CliRunner()


@pytest.mark.parametrize("c", CASES, ids=[f"{c.entry}: {c.name}" for c in CASES])
def test_cli_case(c: Case, m, request, tmp_path, runner):
    if c.needs_model:
        m = {**m, "model": request.getfixturevalue("model")}
    argv, out = c.build(m, tmp_path)
    before = tree_state(out) if out is not None else {}
    existed = out is not None and out.exists()
    res = runner.invoke(cli, argv, env={"MAXRF_BENCH_QUIET": "1", **(c.env or {})})
    err = res.stderr.strip().splitlines()
    assert "Traceback" not in res.output, res.output
    assert res.exit_code == c.code, (res.exit_code, res.output, res.exception)
    if c.usage or c.notes:  # click's usage errors: "Usage: …", "Try …", "", "Error: …"
        assert err and err[-1].startswith("Error: "), res.stderr
        assert sum(line.startswith("Error") for line in err) == 1, res.stderr
    else:
        assert len(err) == 1 and err[0].startswith("Error: "), res.stderr
    for text in c.expect:
        assert text in err[-1], (text, err[-1])
    if out is not None:
        if existed:
            assert tree_state(out) == before, "the command changed --out"
        else:
            assert not out.exists(), "the command created --out"
        leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
        assert not leftovers, leftovers


# --- the Python API -----------------------------------------------------------------------------

API_CASES = []


def api(name, error, match):
    def deco(fn):
        API_CASES.append((name, fn, error, match))
        return fn
    return deco


@api("open_scan: missing", mb.StoreError, "does not exist")
def _(m, tmp):
    mb.open_scan(tmp / "nothere.zarr")


@api("open_scan: corrupt", mb.StoreError, "cannot read scan store")
def _(m, tmp):
    (tmp / "c.zarr").mkdir()
    (tmp / "c.zarr" / ".zgroup").write_text("{")
    mb.open_scan(tmp / "c.zarr")


@api("make_scan: NaN", mb.ScanValidationError, "'maps' must be finite")
def _(m, tmp):
    d = toy_scene(16, 2)
    d["maps"][0, 0, 0] = np.nan
    mb.make_scan(**d)


@api("make_scan: maps of the wrong rank", mb.ScanValidationError, "maps must be (element, y, x)")
def _(m, tmp):
    d = toy_scene(16, 2)
    mb.make_scan(rgb=d["rgb"], elements=d["elements"], maps=d["maps"][0])


@api("make_scan: photo of 2 dims", mb.ScanValidationError, "rgb must be (band, y, x)")
def _(m, tmp):
    d = toy_scene(16, 2)
    mb.make_scan(rgb=d["rgb"][0], elements=d["elements"], maps=d["maps"])


@api("make_scan: elements and maps disagree", mb.ScanValidationError, "with 3 elements, found shape (2")
def _(m, tmp):
    d = toy_scene(16, 2)
    mb.make_scan(rgb=d["rgb"], elements=["Pb_L", "Hg_L", "Ca_K"], maps=d["maps"])


@api("validate_scan: not a dataset", mb.ScanValidationError, "expected an xarray.Dataset, found ndarray")
def _(m, tmp):
    mb.validate_scan(np.zeros(3))


@api("run_grid: unknown method", mb.UnknownNameError, "unknown method 'nosuch'")
def _(m, tmp):
    mb.run_grid(["nosuch"], [str(m["good"])], out=tmp / "out")


@api("run_grid: bad scale", mb.ScanValidationError, "leaves no LR pixel")
def _(m, tmp):
    mb.run_grid(["bicubic"], [str(m["good"])], out=tmp / "out", scale=33)


@api("run_grid: bad device", mb.ConfigError, "--device expects auto, cpu or cuda, found 'tpu'")
def _(m, tmp):
    mb.run_grid(["bicubic"], [str(m["good"])], out=tmp / "out", device="tpu")


@api("run_grid: no method", mb.ConfigError, "expected at least one method")
def _(m, tmp):
    mb.run_grid([], [str(m["good"])], out=tmp / "out")


@api("run_grid: empty seeds", mb.ConfigError, "at least one integer seed")
def _(m, tmp):
    mb.run_grid(["bicubic"], [str(m["good"])], out=tmp / "out", seeds=[])


@api("read_results: not a run", mb.StoreError, "results.csv")
def _(m, tmp):
    mb.read_results(tmp)


@api("load_maps: no such column", mb.StoreError, "expected one of the columns there: bicubic")
def _(m, tmp):
    mb.load_maps(m["run"], "good", "guided")


@api("load_inputs: no such dataset", mb.StoreError, "no inputs for dataset 'nosuch'")
def _(m, tmp):
    mb.load_inputs(m["run"], "nosuch")


@api("find_cell: no such seed", mb.StoreError, "no finished run")
def _(m, tmp):
    mb.find_cell(m["run"], "good", "bicubic", seed=7)


@api("parse_spec: garbage", mb.ConfigError, "a method must be written NAME")
def _(m, tmp):
    mb.parse_spec("Bi Cubic!")


@api("parse_sets: no dot", mb.ConfigError, "--set expects METHOD.KEY=VALUE")
def _(m, tmp):
    mb.parse_sets(["radius=2"])


@api("make_operator: unknown", mb.ConfigError, "unknown operator 'box'")
def _(m, tmp):
    mb.make_operator("box", 4)


@api("get_method: unknown", mb.UnknownNameError, "unknown method 'nosuch'")
def _(m, tmp):
    mb.get_method("nosuch")


@api("save_maps: unknown format", mb.ConfigError, "format")
def _(m, tmp):
    mb.save_maps(m["run"], tmp / "o", method="bicubic", fmt="gif")


@api("write_report: not a run", mb.MaxrfError, "results.csv")
def _(m, tmp):
    mb.write_report(tmp)


@api("rerun_cell: unknown dataset", mb.ConfigError, "has no dataset 'nosuch'")
def _(m, tmp):
    from maxrf_bench.reproduce import rerun_cell

    rerun_cell(m["run"], "nosuch", "bicubic")


@pytest.mark.parametrize("name, fn, error, match", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_case(name, fn, error, match, m, tmp_path):
    with pytest.raises(error, match=None) as info:
        fn(m, tmp_path)
    assert isinstance(info.value, mb.MaxrfError)
    assert match in str(info.value), str(info.value)
    assert not (tmp_path / "out").exists()


# --- property-based: random corruption is answered with a MaxrfError or accepted -----------------

_FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_BAD_VALUES = st.sampled_from([np.nan, np.inf, -np.inf, -1.0, -1e30, 1e38, 0.0, 2.0, 7.5])


@_FAST
@given(var=st.sampled_from(["maps", "rgb"]), value=_BAD_VALUES,
       where=st.tuples(st.integers(0, 2), st.integers(0, 15), st.integers(0, 15)),
       dtype=st.sampled_from(["float32", "float64", "int16", "uint8"]))
def test_validator_answers_every_corruption_with_a_typed_error(var, value, where, dtype):
    d = toy_scene(16, 3, seed=1)
    arrays = {"maps": d["maps"].copy(), "rgb": d["rgb"].copy()}
    a = arrays[var].astype(np.float64)
    a[where] = value
    if np.dtype(dtype).kind in "iu":
        with np.errstate(invalid="ignore", over="ignore"):
            a = np.nan_to_num(a, nan=0, posinf=0, neginf=0).clip(np.iinfo(dtype).min, np.iinfo(dtype).max)
    arrays[var] = a.astype(dtype)
    ds = xr.Dataset({"maps": (("element", "y", "x"), arrays["maps"]),
                     "rgb": (("band", "y", "x"), arrays["rgb"])},
                    coords={"element": d["elements"], "band": ["R", "G", "B"]})
    try:
        mb.validate_scan(ds)
    except mb.ScanValidationError as exc:
        assert "expected" in str(exc) or "must" in str(exc)
        return
    # accepted: then it really is valid
    assert np.isfinite(arrays["maps"]).all() and (arrays["maps"] >= 0).all()
    rgb = arrays["rgb"]
    assert np.isfinite(rgb).all() and rgb.min() >= 0 and rgb.max() <= 1


@_FAST
@given(text=st.text(alphabet=st.sampled_from(list("abc+PCX[]=,.0123 -_/\\'\"<>")), max_size=24))
def test_method_specs_parse_or_fail_typed(text):
    from maxrf_bench.variants import split_specs

    try:
        for spec in split_specs(text):
            s = mb.parse_spec(spec)
            assert "/" not in s.name and not s.name.startswith(".")
    except mb.MaxrfError:
        pass


@_FAST
@given(items=st.lists(st.text(alphabet=st.sampled_from(list("ab.=1x, []")), max_size=12), max_size=4))
def test_set_options_parse_or_fail_typed(items):
    try:
        mb.parse_sets(items)
    except mb.ConfigError:
        pass


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=0, max_size=600), which=st.sampled_from(["zgroup", "zarray", "zattrs", "chunk"]))
def test_corrupt_store_bytes_give_a_typed_error(tmp_path_factory, data, which):
    d = toy_scene(16, 2, seed=2)
    root = tmp_path_factory.mktemp("hyp")
    path = mb.save_scan(mb.make_scan(**d), root / "s.zarr")
    target = {"zgroup": path / ".zgroup", "zarray": path / "maps" / ".zarray",
              "zattrs": path / ".zattrs",
              "chunk": next(p for p in (path / "maps").iterdir() if not p.name.startswith("."))}[which]
    target.write_bytes(data)
    (path / ".zmetadata").unlink(missing_ok=True)  # else the consolidated copy hides the damage
    try:
        mb.open_scan(path)
    except mb.MaxrfError:
        pass


@settings(max_examples=25, deadline=None)
@given(data=st.binary(min_size=0, max_size=400), suffix=st.sampled_from([".png", ".tif", ".jpg"]))
def test_corrupt_image_bytes_give_a_typed_error(data, suffix):
    import tempfile

    from maxrf_bench_datasets import importers

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"img{suffix}"
        path.write_bytes(data)
        for reader in (importers.read_photo, importers.read_map_image):
            try:
                reader(path)
            except mb.MaxrfError:
                pass


# --- the real command, in its own process -------------------------------------------------------

def test_real_script_one_line_and_debug_traceback(m, tmp_path):
    """The installed script: one line and exit 2 normally; with --debug the traceback too."""
    scan = _modified(tmp_path / "s.zarr", "maps", lambda a: a.__setitem__((0, 1, 1), np.nan))
    out = tmp_path / "out"
    env = {**os.environ, "MAXRF_BENCH_QUIET": "1"}
    plain = subprocess.run([str(BIN), "run", "-m", "bicubic", "-d", str(scan), "-o", str(out)],
                           capture_output=True, text=True, env=env)
    assert plain.returncode == 2 and plain.stderr.count("\n") == 1, plain.stderr
    assert plain.stderr.startswith("Error: ") and "Traceback" not in plain.stderr
    debug = subprocess.run([str(BIN), "--debug", "run", "-m", "bicubic", "-d", str(scan), "-o", str(out)],
                           capture_output=True, text=True, env=env)
    assert debug.returncode == 2 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1] == plain.stderr.strip()
    assert not out.exists()


def test_unexpected_errors_are_one_line_with_exit_70(monkeypatch, m, tmp_path, runner):
    """A bug (not a user error) is one line and exit 70 without --debug, a traceback with it."""
    from maxrf_bench import runner as runner_mod

    def boom(*a, **k):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(runner_mod.Runner, "check", boom)
    argv = ["run", "-q", "-m", "bicubic", "-d", str(m["good"]), "-o", str(tmp_path / "o")]
    res = runner.invoke(cli, argv)
    assert res.exit_code == 70 and "Traceback" not in res.output
    assert res.stderr.strip().splitlines() == [
        "Error: internal error: ZeroDivisionError: simulated bug (a bug in maxrf-bench or in a "
        "plugin; rerun with --debug for the traceback)"]
    res = runner.invoke(cli, ["--debug", *argv])
    assert isinstance(res.exception, ZeroDivisionError)  # --debug lets it through


def test_battery_size():
    """The count reported for issue 13 (CLI cases per entry point, API cases)."""
    per_entry = {}
    for c in CASES:
        per_entry[c.entry] = per_entry.get(c.entry, 0) + 1
    assert set(per_entry) >= {"run", "import", "simulate", "export", "infer", "save-maps", "report",
                              "ablate"}
    assert len(CASES) >= 100 and len(API_CASES) >= 20, (len(CASES), len(API_CASES), per_entry)


def test_a_method_that_refuses_its_input_leaves_no_run_directory(m, tmp_path, runner):
    """Bad input found by a method while it runs (missing weights, a patch larger than the
    scan…): exit 2, one line, and the run directory this run created is gone again."""
    from maxrf_bench.testing import registered_plugin

    class Refusing:
        @mb.hookimpl
        def maxrf_bench_register_methods(self, register):
            def run(inputs, weights: str = ""):
                raise mb.ConfigError(f"refusing.weights: no such file {weights!r}; expected a .pth file")

            register(mb.Method("refusing", run, "needs weights", defaults={"weights": ""}))

    out = tmp_path / "out"
    with registered_plugin(Refusing(), "refusing"):
        res = runner.invoke(cli, ["run", "-q", "-m", "refusing", "-d", str(m["good"]), "-o", str(out),
                                  "--set", "refusing.weights=nothere.pth"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.stderr.strip().splitlines() == [
        "Error: refusing.weights: no such file 'nothere.pth'; expected a .pth file"]
    assert not out.exists()

