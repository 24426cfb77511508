"""Out-of-core inference: Zarr chunks in, tiles through onnxruntime, Zarr chunks out.

Memory stays bounded by a few tiles and a few input chunks whatever the scan's size:
each tile reads only its region (plus the halo) from the input store, through a small
cache of decoded chunks (:class:`ChunkCache`), and writes only its core into a
pre-created output store whose chunks are the tiles, so parallel writers never share a
chunk.  The
output is built in a temporary sibling and renamed into place at the end, so a reader
never sees half a result and a failure leaves nothing behind.

With dask the same tiles become one task each (``threads``, ``processes`` or the address
of a ``dask.distributed`` scheduler); every worker process builds its own onnxruntime
session on first use (sessions do not pickle) and keeps it for its next tiles.  With a
distributed cluster the input and output paths must be visible to every worker
(a shared file system).
"""
from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .chunks import check_blosc_chunks
from .atomic import OutputError, output_dir, zarr_attrs
from .validate import attr_problems, value_problems
from .cluster import SCHEDULERS, connect, parse_scheduler
from .model import (CPU, InferError, ModelInfo, cached_session, create_session, model_margin,
                    pad_margin, read_model_info, run_graph)
from .quantize import check_precision, require_quantizer
from .tiles import Tile, infer_tiled, plan_tiles, tile_size_lr

#: I/O tile edge in HR pixels: one output chunk (21 elements: 5.5 MB), one read of the
#: input per tile; the working set is a few such tiles.
DEFAULT_TILE = 256
#: Edge (HR pixels) of the pieces one onnxruntime run gets on the CPU, for a model that
#: outputs its input's core (``margin_lr``): the 64-channel activations of a 64 × 64 piece
#: (1 MB) stay in a core's L2 cache, and no piece pays for a halo's output; 64 ran the most
#: pixels per CPU-second (tests/benchmarks/bench_infer.py, issue 26).  On CUDA a whole tile.
CPU_COMPUTE_TILE = 64
#: The same for a model whose output is its whole input (exported before ``margin_lr``):
#: every piece also computes its halo's output, which larger pieces amortise.
CPU_COMPUTE_TILE_WHOLE = 128


@dataclass
class ScanInfo:
    """The parts of an input scan the runtime checks before it writes anything."""

    path: Path
    elements: list[str]
    h_lr: int
    w_lr: int
    height: int
    width: int
    coords: dict[str, Any]
    attrs: dict[str, Any]
    lr_source: str = "maps_lr"  # or "maps": no measured LR, simulate it by the block mean


@dataclass
class InferResult:
    """What :func:`infer` did."""

    output: Path
    providers: list[str]
    tiles: int
    seconds: float
    shape: tuple[int, int, int]

    @property
    def megapixels_per_second(self) -> float:
        return self.shape[1] * self.shape[2] / 1e6 / max(self.seconds, 1e-9)


# --- checking the scan against the model -------------------------------------------

def read_scan_info(path: str | os.PathLike, scale: int | None = None) -> ScanInfo:
    """Open a scan lazily (nothing but coordinates is read) and check its layout.

    A scan without ``maps_lr`` but with HR ``maps`` (a benchmark scan with ground truth)
    is read as the measurement ``maps_lr = blockmean(maps)`` at ``scale``, which is how
    ``maxrf-bench run`` degrades it; the output then equals the run's own output."""
    import xarray as xr

    path = Path(path)
    if not path.is_dir():
        raise InferError(f"scan {str(path)!r} does not exist or is not a Zarr store "
                         "(expected a .zarr directory with maps_lr and rgb)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_blosc_chunks(path)  # a truncated chunk can otherwise decode silently
            ds = xr.open_zarr(path, consolidated=None, chunks=None)
    except Exception as exc:  # zarr/xarray raise many types for a broken store
        raise InferError(f"cannot read scan {str(path)!r}: expected a Zarr store, found "
                         f"{type(exc).__name__}: {exc}") from None
    expected = {"maps_lr": ("element", "y_lr", "x_lr"), "rgb": ("band", "y", "x")}
    lr_source = "maps_lr"
    if "maps_lr" not in ds and "maps" in ds and scale:
        lr_source = "maps"
        expected = {"maps": ("element", "y", "x"), "rgb": ("band", "y", "x")}
    problems = []
    for var, dims in expected.items():
        if var not in ds:
            problems.append(f"a variable {var!r} {dims}")
        elif tuple(ds[var].dims) != dims:
            problems.append(f"{var!r} with dims {dims}, found {tuple(ds[var].dims)}")
    if problems:
        raise InferError(f"scan {str(path)!r}: expected {'; '.join(problems)} "
                         f"(variables found: {sorted(ds.data_vars)})")
    if ds["rgb"].sizes["band"] != 3:
        raise InferError(f"scan {str(path)!r}: 'rgb' must have 3 bands, found {ds['rgb'].sizes['band']}")
    problems = attr_problems(ds.attrs)  # the checks `maxrf-bench run` makes, shared
    for var in ("maps_lr", "maps", "rgb"):
        if var in ds:  # the dtype now; the values tile by tile (process_tile)
            problems += value_problems(var, np.empty(0, ds[var].dtype))
    if "element" in ds.coords and ds.sizes.get("element", 0) == 0:
        problems.append(f"'{lr_source}' has no element")
    if problems:
        raise InferError(f"scan {str(path)!r}: " + "; ".join(problems))
    coords = {name: ds[name].values for name in ("element", "y", "x") if name in ds.coords}
    if "element_label" in ds.coords:
        coords["element_label"] = ds["element_label"].values
    elements = [str(e) for e in ds["element"].values] if "element" in ds.coords else []
    height, width = ds.sizes["y"], ds.sizes["x"]
    if lr_source == "maps":
        if height % scale or width % scale:
            raise InferError(f"scan {str(path)!r} has no maps_lr, and its maps {height}×{width} "
                             f"cannot be block-averaged at the model's scale {scale}")
        h_lr, w_lr = height // scale, width // scale
    else:
        h_lr, w_lr = ds.sizes["y_lr"], ds.sizes["x_lr"]
    return ScanInfo(path, elements, h_lr, w_lr, height, width, coords, dict(ds.attrs), lr_source)


def check_compatible(model: ModelInfo, scan: ScanInfo) -> None:
    """Refuse a scan whose elements, element order or scale differ from the model's."""
    m, s = model.elements, scan.elements
    if m != s:
        if sorted(m) == sorted(s):
            what = "the same elements in another order"
        elif set(s) - set(m) or set(m) - set(s):
            extra, missing = sorted(set(s) - set(m)), sorted(set(m) - set(s))
            what = f"scan-only {extra}, model-only {missing}"
        else:
            what = "different elements"
        raise InferError(f"scan elements do not match the model ({what}): model "
                         f"{model.path.name} expects {m}, scan {scan.path.name} has {s}")
    scale = model.scale
    ratio_y = scan.height / scan.h_lr if scan.h_lr else float("nan")
    ratio_x = scan.width / scan.w_lr if scan.w_lr else float("nan")
    attr = scan.attrs.get("scale")
    if (scan.height != scale * scan.h_lr or scan.width != scale * scan.w_lr
            or (attr is not None and int(attr) != scale)):
        raise InferError(
            f"scan scale does not match the model: model {model.path.name} has scale {scale}, scan "
            f"{scan.path.name} has rgb {scan.height}×{scan.width} and maps_lr {scan.h_lr}×{scan.w_lr} "
            f"(ratio {ratio_y:g}×{ratio_x:g}"
            + (f", attribute scale={attr})" if attr is not None else ")"))


# --- the per-tile work (runs in dask workers too) -----------------------------------

_MALLOC_BOUNDED = False


def bound_malloc() -> None:
    """Keep tile-sized arrays out of glibc's heap, so memory does not grow tile after tile.

    glibc raises its mmap threshold (up to 32 MB) each time a large mmapped block is
    freed; afterwards the tile buffers (tens of MB) come from the heap, which fragments
    and is not given back: RSS then grows with the number of tiles, i.e. with the scan.
    Setting the threshold explicitly (``M_MMAP_THRESHOLD`` = 1 MiB) turns the adjustment
    off.  Once per process; a no-op off glibc.
    """
    global _MALLOC_BOUNDED
    if _MALLOC_BOUNDED:
        return
    _MALLOC_BOUNDED = True
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl…): nothing to tune
        pass


class ChunkCache:
    """Reads ``(c, y, x)`` regions of a Zarr array through an LRU cache of decoded chunks.

    Tiles are smaller than the chunks of a typical scan (512 × 512 × 21 elements: 22 MB)
    and their halos cross chunk edges, so reading each tile's region straight from the
    store would decode the same chunks again and again (CPU) and several at once (memory
    spikes).  With tiles visited chunk by chunk (:func:`order_tiles`) each chunk is decoded
    about once, and memory holds at most ``max_chunks`` chunks, whatever the scan's size.
    """

    def __init__(self, array, max_chunks: int = 4):
        self.array = array
        self.cy, self.cx = int(array.chunks[-2]), int(array.chunks[-1])
        self.max_chunks = max_chunks
        self.blocks: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self.lock = threading.Lock()  # tiles run in several threads (--workers, dask threads)

    def _block(self, i: int, j: int) -> np.ndarray:
        if (i, j) in self.blocks:
            self.blocks.move_to_end((i, j))
            return self.blocks[i, j]
        while len(self.blocks) >= self.max_chunks:
            self.blocks.popitem(last=False)
        block = np.asarray(self.array[:, i * self.cy:(i + 1) * self.cy, j * self.cx:(j + 1) * self.cx])
        self.blocks[i, j] = block
        return block

    def read(self, ys: slice, xs: slice) -> np.ndarray:
        """The region ``[:, ys, xs]`` (slices with explicit start and stop)."""
        with self.lock:
            return self._read(ys, xs)

    def _read(self, ys: slice, xs: slice) -> np.ndarray:
        c = self.array.shape[0]
        out = np.empty((c, ys.stop - ys.start, xs.stop - xs.start), dtype=self.array.dtype)
        for i in range(ys.start // self.cy, (ys.stop - 1) // self.cy + 1):
            y0, y1 = max(ys.start, i * self.cy), min(ys.stop, (i + 1) * self.cy)
            for j in range(xs.start // self.cx, (xs.stop - 1) // self.cx + 1):
                x0, x1 = max(xs.start, j * self.cx), min(xs.stop, (j + 1) * self.cx)
                block = self._block(i, j)
                out[:, y0 - ys.start:y1 - ys.start, x0 - xs.start:x1 - xs.start] = \
                    block[:, y0 - i * self.cy:y1 - i * self.cy, x0 - j * self.cx:x1 - j * self.cx]
        return out


_INPUTS: dict[tuple, ChunkCache] = {}
_INPUTS_LOCK = threading.Lock()


def _reader(path: str, name: str, workers: int = 1) -> ChunkCache:
    """The cached reader of an input array, one per process, keyed by the metadata's mtime
    (so a rewritten scan is never read stale).  With several tiles in flight (``workers``)
    it keeps two more map chunks: the tiles a worker pool runs at once may straddle them."""
    import zarr

    meta = [Path(path, name, f) for f in (".zarray", "zarr.json")]
    stamp = tuple(m.stat().st_mtime_ns for m in meta if m.exists())
    key = (path, name, stamp, os.getpid())
    # RGB chunks are small (3 bands): keep more of them, a tile row crosses several.
    wanted = (2 if name != "rgb" else 8) + (2 if workers > 1 else 0)
    with _INPUTS_LOCK:
        if key not in _INPUTS:
            for old in [k for k in _INPUTS if k[:2] == (path, name)]:
                del _INPUTS[old]
            _INPUTS[key] = ChunkCache(zarr.open_group(path, mode="r")[name], max_chunks=wanted)
        cache = _INPUTS[key]
        cache.max_chunks = max(cache.max_chunks, wanted)
        return cache


def order_tiles(tiles: list[Tile], block_lr: int) -> list[Tile]:
    """Visit the tiles chunk by chunk of the input (``block_lr`` LR pixels), row-major inside."""
    return sorted(tiles, key=lambda t: (t.y0 // block_lr, t.x0 // block_lr, t.y0, t.x0))


def input_block_lr(scan_path: str, lr_source: str, scale: int) -> int:
    """The edge, in LR pixels, of the chunks of the scan's map array."""
    import zarr

    chunks = zarr.open_group(scan_path, mode="r")[lr_source].chunks
    edge = max(int(chunks[-2]), int(chunks[-1]))
    return max(1, edge // scale) if lr_source == "maps" else edge


def _locate(y0: int, x0: int, step: int):
    """``locate(mask)`` for :func:`value_problems` on a region starting at ``(y0, x0)``."""
    def locate(mask: np.ndarray) -> str:
        idx = [int(i[0]) for i in np.nonzero(mask)]
        return f"element index {idx[0]}, y={y0 + idx[1] * step}, x={x0 + idx[2] * step}"
    return locate


def process_tile(model_path: str, provider: str, threads: int | None, scan_path: str,
                 out_path: str, tile: Tile, scale: int, offset: np.ndarray,
                 span: np.ndarray, lr_source: str = "maps_lr", halo: int = 1,
                 compute_tile: int | None = None, workers: int = 1, session=None,
                 photo_field: np.ndarray | None = None, recorrupt: dict | None = None) -> str:
    """Read one tile's region, super-resolve it, write its core; return the provider used.

    The read region runs through the model in pieces of ``compute_tile`` HR pixels (each
    with its own halo, so the result is exactly the model's output on the whole region).
    ``session``: ``(session, provider)`` to run on (a worker's own, :func:`infer`'s
    ``workers``) instead of the process's cached one; ``workers``: how many tiles are in
    flight (the input cache keeps a few more chunks); ``photo_field``: the model's registration
    field (:mod:`maxrf_infer.photo`), applied to the photograph as it is read; ``recorrupt``:
    the model's recorruption record (:mod:`maxrf_infer.recorrupt`): the tile's maps are the
    mean over its draws, each drawn at the tile's own LR pixels, then projected if it says so."""
    bound_malloc()
    session, used = session or cached_session(model_path, provider, threads)
    lr, rgb = read_tile(scan_path, tile, scale, offset, span, lr_source, workers, photo_field)
    margin = model_margin(session)  # > 0: the graph returns its input's core
    if compute_tile is None:
        compute_tile = (CPU_COMPUTE_TILE if margin else CPU_COMPUTE_TILE_WHOLE) if used == CPU else 0
    # only the core is computed: pieces near its edge read the tile's halo
    core = (tile.y0 - tile.ey0, tile.y1 - tile.ey0, tile.x0 - tile.ex0, tile.x1 - tile.ex0)
    def raw(lr_in: np.ndarray) -> np.ndarray:
        return infer_tiled(lambda a, b: run_graph(session, a, b), lr_in, rgb, scale,
                           tile_hr=compute_tile or None, halo=halo, core=core, margin=margin)

    if recorrupt is None:
        counts = raw(lr)
    else:  # the draws at the read region's LR pixels: every tile draws the whole scan's noise
        from .recorrupt import recorrupted_average
        from .weighted import blockmean_project

        counts = recorrupted_average(raw, lr, recorrupt, offset, span, origin=(tile.ey0, tile.ex0))
        if recorrupt["projection"]:
            counts = blockmean_project(counts, lr[:, core[0]:core[1], core[2]:core[3]], scale)
    counts *= span[:, None, None]  # de-normalised in place: no second tile-sized array
    counts += offset[:, None, None]
    wy, wx = tile.write_hr(scale)
    import zarr

    zarr.open_group(out_path, mode="r+")["maps"][:, wy, wx] = counts
    del counts
    return used


def read_tile(scan_path: str, tile: Tile, scale: int, offset: np.ndarray, span: np.ndarray,
              lr_source: str = "maps_lr", workers: int = 1,
              photo_field: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A tile's read region (core and halo): the normalised LR maps and the photograph,
    value-checked as ``maxrf-bench run`` checks a scan.  ``photo_field``: the photograph is
    read with the field's margin and returned registered (:mod:`maxrf_infer.photo`), exactly
    the whole image's registered photograph on the region."""
    ly, lx = tile.read_lr()
    hy, hx = tile.read_hr(scale)
    lr = read_lr_counts(scan_path, ly, lx, scale, lr_source, workers)
    rgb_reader = _reader(scan_path, "rgb", workers)
    # the photograph of the region, and around it what a registration field samples (margin 0
    # without a field: the region itself)
    from .photo import margin_of, read_window

    m = 0 if photo_field is None else margin_of(photo_field)
    height, width = rgb_reader.array.shape[-2:]
    ry, rx = read_window(height, hy, m), read_window(width, hx, m)
    rgb = rgb_reader.read(ry, rx).astype(np.float32, copy=False)
    origin = (ry.start, rx.start)
    # the value checks of `maxrf-bench run`, tile by tile (the scan may not fit in memory)
    problems = (value_problems(lr_source, lr, _locate(hy.start, hx.start, scale) if lr_source == "maps"
                                  else _locate(ly.start, lx.start, 1))
                + value_problems("rgb", rgb, _locate(*origin, 1)))
    if problems:
        raise InferError(f"scan {scan_path!r}: " + "; ".join(problems)
                         + f" (in LR rows {tile.ey0}:{tile.ey1}, columns {tile.ex0}:{tile.ex1})")
    if photo_field is not None:
        from .photo import registered_region

        rgb = registered_region(rgb, origin, hy, hx, photo_field, scale)
    lr = (lr - offset[:, None, None]) / span[:, None, None]
    return lr, rgb


def read_lr_counts(scan_path: str, ly: slice, lx: slice, scale: int, lr_source: str = "maps_lr",
                   workers: int = 1) -> np.ndarray:
    """The LR maps in counts on the LR pixels ``ly × lx`` (float32): ``maps_lr`` as stored, or
    the block mean of the HR ``maps`` (in float64) for a scan without measured LR maps."""
    if lr_source == "maps":  # simulated measurement: block mean of the HR maps (in float64)
        hy, hx = slice(ly.start * scale, ly.stop * scale), slice(lx.start * scale, lx.stop * scale)
        hr = _reader(scan_path, "maps", workers).read(hy, hx).astype(np.float64)
        b, h, w = hr.shape
        return hr.reshape(b, h // scale, scale, w // scale, scale).mean(axis=(2, 4)).astype(np.float32)
    return _reader(scan_path, "maps_lr", workers).read(ly, lx).astype(np.float32, copy=False)


def noise_aware_pass(tiles: list[Tile], out_path: str, scan_path: str, info: ModelInfo,
                     lr_source: str) -> np.ndarray:
    """``--noise-aware``: the host's ``+W`` on the maps the tiles wrote (:mod:`maxrf_infer.weighted`):
    one pass over the tiles' outputs and LR maps for ``τ²``, one that corrects each tile's
    own chunk in place.  Returns ``τ²`` per element (normalised units)."""
    import zarr

    from .weighted import apply, residual_sums, tau2

    s, noise = info.scale, info.metadata["lr_noise"]
    off, span = info.offset[:, None, None], info.span[:, None, None]
    maps = zarr.open_group(out_path, mode="r+")["maps"]

    def region(t: Tile):
        ly, lx = slice(t.y0, t.y1), slice(t.x0, t.x1)
        lr = (read_lr_counts(scan_path, ly, lx, s, lr_source) - off) / span
        wy, wx = t.write_hr(s)
        return (wy, wx), (np.asarray(maps[:, wy, wx], np.float64) - off) / span, lr

    sums = 0.0
    for t in tiles:
        _, y, lr = region(t)
        sums = sums + residual_sums(y, lr, noise, info.offset, info.span, s)
    t2 = tau2(sums)
    for t in tiles:
        (wy, wx), y, lr = region(t)
        maps[:, wy, wx] = (apply(y, lr, t2, noise, info.offset, info.span, s) * span + off).astype(np.float32)
    return t2


# --- the output store ---------------------------------------------------------------

def _create_output(tmp: Path, model: ModelInfo, scan: ScanInfo, chunk_hr: int,
                   attrs: dict[str, Any]) -> None:
    """Write the output store's metadata and coordinates; the maps are filled by tiles."""
    import dask.array as da
    import xarray as xr

    b, h, w = len(model.elements), scan.height, scan.width
    chunks = (b, min(chunk_hr, h), min(chunk_hr, w))
    maps = da.zeros((b, h, w), dtype=np.float32, chunks=chunks)
    coords: dict[str, Any] = {"element": model.elements}
    for dim in ("y", "x"):
        if dim in scan.coords:
            coords[dim] = scan.coords[dim]
    if "element_label" in scan.coords:
        coords["element_label"] = ("element", scan.coords["element_label"])
    ds = xr.Dataset({"maps": (("element", "y", "x"), maps)}, coords=coords, attrs=attrs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(tmp, mode="w", zarr_format=2, consolidated=True, compute=False,
                   encoding={"maps": {"chunks": chunks}})


def owned_infer_output(path: Path) -> bool:
    """An output of ours: a Zarr store written by ``maxrf-infer`` (``producer`` attribute)."""
    attrs = zarr_attrs(path)
    return attrs is not None and attrs.get("producer") == "maxrf-infer"


# --- progress -----------------------------------------------------------------------

class ProgressBar:
    """A tqdm progress bar over the tiles on stderr, with HR megapixels per second.

    Drawn only on a terminal (``MAXRF_BENCH_PROGRESS=1`` forces it, ``MAXRF_BENCH_QUIET=1``
    or ``--quiet`` silences it); elapsed and remaining time come from tqdm.
    """

    def __init__(self, total: int, pixels_per_tile: float, enabled: bool = True, stream=None,
                 desc: str = "maxrf-infer"):
        self.total, self.done = total, 0
        self.pixels_per_tile = pixels_per_tile
        self.stream = stream or sys.stderr
        flag = (lambda name: os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no"))
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled and not flag("MAXRF_BENCH_QUIET") and (tty or flag("MAXRF_BENCH_PROGRESS"))
        self.t0 = time.perf_counter()
        self._bar = None
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="tile", file=self.stream,
                             mininterval=0.2, dynamic_ncols=True, delay=0.5,
                             bar_format="{desc} {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} tiles "
                                        "[{elapsed}<{remaining}]{postfix}")

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is None:
            return
        rate = self.done * self.pixels_per_tile / 1e6 / max(time.perf_counter() - self.t0, 1e-9)
        self._bar.set_postfix_str(f"{rate:.3g} HR MP/s", refresh=False)
        self._bar.update(n)
        if self.done >= self.total:
            self._bar.close()
            self._bar = None


# --- the entry point ----------------------------------------------------------------

def infer(model: str | os.PathLike, scan: str | os.PathLike, out: str | os.PathLike, *,
          tile: int | None = DEFAULT_TILE, provider: str = "auto", scheduler: str | None = None,
          threads: int | None = None, compute_tile: int | None = None, progress: bool = True,
          echo=None, workers: int | None = None, precision: str = "fp32",
          noise_aware: bool = False, fuse: bool = False) -> InferResult:
    """Super-resolve the scan ``scan`` (Zarr, ``maps_lr`` in counts and ``rgb``) with the
    exported ``model`` and write ``out`` (Zarr: ``maps`` (element, y, x) in counts).

    ``tile``: tile edge in HR pixels (rounded down to whole LR blocks; ``None`` or 0: the
    whole scan at once).  ``provider``: ``auto``, ``cuda`` or ``cpu``.  ``scheduler``:
    ``None`` (stream tiles in this process), ``threads``, ``processes`` or the address of
    a dask.distributed scheduler.  ``compute_tile``: HR edge of the pieces one onnxruntime
    run gets (default 64 on the CPU, 128 for a model without ``margin_lr``, the whole tile on
    CUDA; 0: the whole tile).  ``workers``: I/O tiles in flight at once without a
    ``scheduler``, each in its own thread with its own onnxruntime session of ``threads``
    threads (default on the CPU: one single-threaded session per core: 2.44 against 1.88 HR
    MP/s for one session on both cores of the idle 2-core VM, issue 26; on CUDA 1).  The output does not
    depend on it.  ``precision``: ``fp32`` (the default: the run's maps to 1e-5) or ``int8``
    (:mod:`maxrf_infer.quantize`: the model quantised on the CPU, calibrated on a few tiles
    of this scan; its difference to fp32 is measured on others and echoed).
    ``noise_aware``: the maps are the run's ``+W`` column, the host's noise-aware projection
    (ours) applied after the model with the LR noise model the export recorded (``lr_noise``;
    :mod:`maxrf_infer.weighted`), in two more passes over the output.  ``fuse``: the maps are
    the run's ``+F`` column, the model's output fused with the scan's ``maps_dwell`` (a
    short-dwell HR-step scan, ``maxrf-bench import --short-dwell``) by its counting noise
    (:mod:`maxrf_infer.fuse`), in one more pass over the output.
    ``echo(str)`` receives status lines (stderr by default).
    """
    echo = echo or (lambda s: print(s, file=sys.stderr, flush=True))
    scheduler = parse_scheduler(scheduler)  # a malformed value fails before any work
    for name, value, low in (("--tile", tile, 0), ("--compute-tile", compute_tile, 0), ("--threads", threads, 1),
                             ("--workers", workers, 1)):
        if value is not None and (isinstance(value, bool) or int(value) != value or int(value) < low):
            raise InferError(f"{name} expects an integer ≥ {low}, found {value}")
    check_precision(precision)
    if precision != "fp32" and (scheduler is not None or provider == "cuda"):
        raise InferError(f"--precision {precision} runs on the CPU without --scheduler, found "
                         + (f"--scheduler {scheduler}" if scheduler is not None else "--provider cuda"))
    if precision != "fp32":
        provider = "cpu"
        require_quantizer()
    if workers is not None and scheduler is not None:
        raise InferError(f"--workers applies without --scheduler (found --scheduler {scheduler}: "
                         "the dask scheduler runs the tiles in parallel itself)")
    t0 = time.perf_counter()
    info = read_model_info(model)
    scan_info = read_scan_info(scan, info.scale)
    check_compatible(info, scan_info)
    check_photo_field(info, scan_info)
    if noise_aware:
        check_lr_noise(info)
    if fuse:
        check_fuse(scan_info, noise_aware)
    if scan_info.lr_source == "maps":
        echo(f"maxrf-infer: {scan_info.path.name} has no maps_lr: using the {info.scale}×{info.scale} "
             "block mean of its HR maps as the measurement (as `maxrf-bench run` does)")
    if info.operator and info.operator.get("name", "blockmean") != "blockmean":
        raise InferError(f"model {info.path.name}: operator {info.operator} is not block-local; "
                         "expected the blockmean operator (tiles would not be exact)")
    s = info.scale
    tile_lr = tile_size_lr(tile, s, scan_info.h_lr, scan_info.w_lr)
    tiles = plan_tiles(scan_info.h_lr, scan_info.w_lr, tile_lr, info.halo_lr)
    tiles = order_tiles(tiles, input_block_lr(str(scan_info.path), scan_info.lr_source, s))
    out = Path(out)
    args = (str(info.path.resolve()), provider)
    scan_path = str(Path(scan).resolve())
    bar = ProgressBar(len(tiles), (tile_lr * s) ** 2, enabled=progress)
    try:
        with output_dir(out, kind="maxrf-infer output store", owned=owned_infer_output,
                        inputs=[scan, model]) as tmp:
            tmp_path = str(tmp.resolve())
            if scheduler is None or scheduler in SCHEDULERS:
                # Fail early (before any work) on a provider that is not there, and tell which
                # runs.  (A distributed cluster's workers may have GPUs this machine lacks.)
                _, used = cached_session(info.path, provider, threads)
                reason = getattr(create_session, "last_reason", "")
                if scheduler is None:
                    n_workers, threads = plan_workers(workers, threads, used, len(tiles))
                    echo(f"maxrf-infer: provider {used}" + (f" (CUDA not used: {reason})" if used == CPU
                                                            and provider == "auto" and reason else "")
                         + (f", {n_workers} tiles at once, {threads} thread(s) each" if n_workers > 1 else ""))
            attrs = _output_attrs(info, scan_info, tile_lr * s)
            if noise_aware:
                attrs["variant"] = ("+W: the noise-aware projection (ours, maxrf_bench.noise) after the model, "
                                    f"LR noise model {info.metadata['lr_noise'].get('model')}")
            if fuse:
                attrs["variant"] = ("+F: the model's output fused with the scan's maps_dwell by its "
                                    "counting noise (ours, maxrf_infer.fuse)")
            source: str | bytes = args[0]
            if precision == "int8":
                source = _int8_model(info, tiles, scan_path, scan_info.lr_source, echo)
                attrs["precision"] = "int8"
            _create_output(tmp, info, scan_info, tile_lr * s, attrs)
            if scheduler is None and n_workers > 1:
                used_set = _run_workers(tiles, n_workers, source, args[1], used, threads, scan_path,
                                        tmp_path, s, info, scan_info.lr_source, compute_tile, bar)
            elif scheduler is None:
                own = None if precision == "fp32" else create_session(source, "cpu", threads)
                used_set = set()
                for t in tiles:
                    used_set.add(process_tile(*args, threads, scan_path, tmp_path, t, s, info.offset,
                                              info.span, scan_info.lr_source, info.halo_lr,
                                              compute_tile, 1, own, info.photo_field, info.recorrupt))
                    bar.update()
            else:
                used_set = _run_dask(tiles, args, scan_path, tmp_path, s, info, scheduler, threads,
                                     bar, scan_info.lr_source, compute_tile)
                echo(f"maxrf-infer: provider {', '.join(sorted(used_set))} (dask scheduler {scheduler})")
            if noise_aware:  # +W needs the whole scan's residual first (its tau²): two more passes
                t2 = noise_aware_pass(tiles, tmp_path, scan_path, info, scan_info.lr_source)
                import zarr

                zarr.open_group(tmp_path, mode="r+").attrs["w_tau2"] = [float(v) for v in t2]
                zarr.consolidate_metadata(tmp_path)
            if fuse:  # +F reads each tile's halo of the model's output: one more pass
                import zarr

                from .fuse import fuse_pass

                fuse_bar = ProgressBar(len(tiles), (tile_lr * s) ** 2, enabled=progress, desc="maxrf-infer +F")
                fuse_pass(tiles, tmp_path, scan_path, s, threads=available_cores(), on_tile=fuse_bar.update)
                zarr.consolidate_metadata(tmp_path)
    except OutputError as exc:
        raise InferError(str(exc)) from None
    seconds = time.perf_counter() - t0
    return InferResult(out, sorted(used_set), len(tiles), seconds,
                       (len(info.elements), scan_info.height, scan_info.width))


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def plan_workers(workers: int | None, threads: int | None, provider: str, n_tiles: int) -> tuple[int, int | None]:
    """``(tiles in flight, onnxruntime threads per session)`` for :func:`infer` without a
    scheduler.  Given ``workers``: as asked (threads default to 1 when ``workers > 1``).
    Default on the CPU: one single-threaded session per core (``threads`` given: as many
    sessions of that many threads as fit the cores); on CUDA one session.  Never more
    workers than tiles."""
    if workers is None:
        if provider != CPU:
            return 1, threads
        workers = max(1, available_cores() // (threads or 1))
    workers = max(1, min(int(workers), n_tiles))
    if workers > 1 and threads is None:
        threads = 1
    return workers, threads


def _run_workers(tiles: list[Tile], workers: int, source: str | bytes, provider: str, used: str,
                 threads: int | None, scan_path: str,
                 out_path: str, scale: int, info: ModelInfo, lr_source: str,
                 compute_tile: int | None, bar: ProgressBar) -> set[str]:
    """The tiles ``workers`` at a time in a thread pool (onnxruntime releases the GIL), each
    thread on its own session; a tile's arrays live only while it runs, so memory holds at
    most ``workers`` tiles (and the input cache), as the sequential loop holds one."""
    import queue
    from concurrent.futures import ThreadPoolExecutor

    sessions: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(workers):
        # the provider that the check in infer() found (auto does not retry CUDA per worker)
        sessions.put(create_session(source, "cpu" if used == CPU else provider, threads))
    args = (str(source) if isinstance(source, str) else "<int8 model>", provider)

    def one(t: Tile) -> str:
        session = sessions.get()
        try:
            return process_tile(*args, threads, scan_path, out_path, t, scale, info.offset, info.span,
                                lr_source, info.halo_lr, compute_tile, workers, session, info.photo_field,
                                info.recorrupt)
        finally:
            sessions.put(session)

    used = set()
    with ThreadPoolExecutor(workers, thread_name_prefix="maxrf-infer") as pool:
        futures = [pool.submit(one, t) for t in tiles]
        try:
            for fut in futures:  # in order: the first failure is raised, the rest cancelled
                used.add(fut.result())
                bar.update()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return used


def _int8_model(info: ModelInfo, tiles: list[Tile], scan_path: str, lr_source: str, echo) -> bytes:
    """``--precision int8``: the model quantised, calibrated on up to 4 tiles of the scan
    spread over it, its difference to fp32 measured on up to 4 others and echoed."""
    from .quantize import int8_difference, quantize_int8

    s, m = info.scale, info.margin_lr
    picks = sorted({int(i) for i in np.linspace(0, len(tiles) - 1, min(8, len(tiles))).round()})
    samples = []
    for i in picks:
        lr, rgb = read_tile(scan_path, tiles[i], s, info.offset, info.span, lr_source,
                            photo_field=info.photo_field)
        e = CPU_COMPUTE_TILE // s  # one piece of the region (calibration keeps every activation)
        # the graph outputs its input's core: give it the margin, edge-padded
        samples.append(pad_margin(lr[:, :e, :e], rgb[:, :e * s, :e * s], m))
    calibration, check = samples[0::2], samples[1::2] or samples
    data = quantize_int8(info.path, calibration)
    diff = int8_difference(create_session(info.path, "cpu", 1)[0], create_session(data, "cpu", 1)[0],
                           check)
    echo(f"maxrf-infer: precision int8 (onnxruntime static quantisation, calibrated on "
         f"{len(calibration)} tile(s) of this scan): largest difference to fp32 {diff:.1e} of the "
         f"largest output on {len(check)} other tile(s); the default fp32 equals the run's maps to 1e-5")
    return data


def _output_attrs(info: ModelInfo, scan: ScanInfo, chunk_hr: int) -> dict[str, Any]:
    import json

    meta = info.metadata
    return {
        "title": scan.attrs.get("title", ""),
        "source_scan": str(scan.path),
        "model": str(info.path),
        "scale": info.scale,
        "units": scan.attrs.get("units", "counts"),
        "normalisation": "maps = model_output * span + offset (per element)",
        "offset": info.offset.tolist(),
        "span": info.span.tolist(),
        "model_metadata": json.dumps({k: (_field_summary(v) if k == "photo_field" else v)
                                      for k, v in meta.items() if k != "normalisation"}, default=str),
        "tile_hr": int(chunk_hr),
        "producer": "maxrf-infer",
    }


def _field_summary(record: Any) -> Any:
    """The ``photo_field`` metadata without its data (the field itself stays in the model)."""
    return {k: v for k, v in record.items() if k != "data"} if isinstance(record, dict) else record


def check_fuse(scan_info, noise_aware: bool) -> None:
    """``--fuse`` needs the scan's short-dwell HR-step scan (``maps_dwell``) and is one variant:
    not with ``--noise-aware`` (a run's column is ``+F`` or ``+W``, not both)."""
    import zarr

    if noise_aware:
        raise InferError("--fuse and --noise-aware are two variants of the output (+F and +W); "
                         "expected one of them, found both")
    group = zarr.open_group(str(scan_info.path), mode="r")
    if "maps_dwell" not in group:
        raise InferError(f"--fuse fuses the output with the scan's short-dwell HR-step scan: expected "
                         f"a variable 'maps_dwell' in {scan_info.path.name} (`maxrf-bench import "
                         f"--short-dwell` writes it), found {sorted(group.array_keys())}")
    shape = tuple(group["maps_dwell"].shape)
    want = (shape[0], scan_info.height, scan_info.width)
    if shape != want:
        raise InferError(f"--fuse: 'maps_dwell' of {scan_info.path.name} must be (element, y, x) = "
                         f"{want} like the output, found {shape}")


def check_lr_noise(model: ModelInfo) -> None:
    """``--noise-aware`` needs the LR noise model the export recorded (``lr_noise``)."""
    from .recorrupt import RecorruptError, check_noise

    noise = model.metadata.get("lr_noise")
    if noise is None:
        raise InferError(f"--noise-aware: model {model.path.name} has no LR noise model (metadata "
                         "'lr_noise'); expected a model exported from a run directory with its saved "
                         "inputs by this maxrf-bench (export it again)")
    try:
        check_noise(noise, len(model.elements))
    except RecorruptError as exc:
        raise InferError(f"model {model.path.name}: metadata {exc}") from None


def check_photo_field(model: ModelInfo, scan: ScanInfo) -> None:
    """Refuse a scan whose size differs from the one a ``register=lr`` model's field was
    estimated on (:mod:`maxrf_infer.photo`)."""
    if model.photo_field is None:
        return
    from .photo import FieldError, check_shape

    try:
        check_shape(model.photo_field, scan.height, scan.width, model.scale,
                    f"scan {scan.path.name}", model.path)
    except FieldError as exc:
        raise InferError(str(exc)) from None


def _run_dask(tiles: list[Tile], args: tuple, scan_path: str, out_path: str, scale: int,
              info: ModelInfo, scheduler: str, threads: int | None, bar: ProgressBar,
              lr_source: str = "maps_lr", compute_tile: int | None = None) -> set[str]:
    """The tiles as a dask graph, one task per tile; returns the providers the workers used."""
    import dask
    from dask.diagnostics import Callback

    # Parallelism comes from dask: one onnxruntime thread per task unless told otherwise.
    threads = threads or 1
    # the registration field (register=lr models) is one node of the graph, not one copy per task
    field = None if info.photo_field is None else dask.delayed(info.photo_field, name="maxrf-photo-field")
    tasks = [dask.delayed(process_tile, pure=False)(*args, threads, scan_path, out_path, t, scale,
                                                    info.offset, info.span, lr_source,
                                                    info.halo_lr, compute_tile, photo_field=field,
                                                    recorrupt=info.recorrupt,
                                                    dask_key_name=f"maxrf-tile-{i}")
             for i, t in enumerate(tiles)]
    if scheduler in SCHEDULERS:
        class _Progress(Callback):
            def _posttask(self, key, result, dsk, state, worker_id):
                if str(key).startswith("maxrf-tile-"):
                    bar.update()

        with _Progress():
            used = dask.compute(*tasks, scheduler=scheduler)
        return set(used)
    client = connect(scheduler)
    from distributed import as_completed
    with client, client.as_current():
        futures = client.compute(tasks)
        used = set()
        for fut in as_completed(futures):
            used.add(fut.result())
            bar.update()
    return used
