"""Tiles that reproduce the whole-image output exactly.

The exported pipeline has three stages, each with a known reach:

* bilinear upsampling (half-pixel centres): HR row ``j`` reads LR rows
  ``floor((j + 0.5)/s - 0.5)`` and the next one, so the HR rows of LR rows ``[a, b)``
  read LR rows ``[a - 1, b + 1)``: a halo of **1 LR pixel**;
* the generator: per pixel (``kernel = 1``, no reach), or ``k − 1`` HR pixels for a
  context-aware generator with k×k analysis/synthesis (the graph edge-pads its input by
  that much and runs valid convolutions);
* the projection (block mean, Eq. 10): per ``s × s`` block, no reach beyond the block.

The model's metadata gives the halo that covers all of them (``halo_lr``: 1 LR pixel for
a per-pixel generator and for k = 3 at scale 4, 2 for k = 5).  A tile is a rectangle of
whole LR pixels (HR blocks): the model runs on the tile grown by the halo (clipped at
the scan's edge, where the upsampling clamps and the graph's edge padding replicates
exactly as on the whole image), and the core of its output is kept.  Tiles never overlap
in the output, so they can be written to a Zarr store in parallel, chunk-aligned.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Tile:
    """One tile in LR pixels: the core ``[y0, y1) × [x0, x1)`` and the read region ``e*``."""

    y0: int
    y1: int
    x0: int
    x1: int
    ey0: int
    ey1: int
    ex0: int
    ex1: int

    def read_lr(self) -> tuple[slice, slice]:
        """LR slices to read (core + halo)."""
        return slice(self.ey0, self.ey1), slice(self.ex0, self.ex1)

    def read_hr(self, s: int) -> tuple[slice, slice]:
        """HR slices of the photograph matching :meth:`read_lr`."""
        return slice(self.ey0 * s, self.ey1 * s), slice(self.ex0 * s, self.ex1 * s)

    def write_hr(self, s: int) -> tuple[slice, slice]:
        """HR slices of the output that this tile owns."""
        return slice(self.y0 * s, self.y1 * s), slice(self.x0 * s, self.x1 * s)

    def core_in_read(self, s: int) -> tuple[slice, slice]:
        """Where the core sits inside the model's output of the read region (HR)."""
        oy, ox = (self.y0 - self.ey0) * s, (self.x0 - self.ex0) * s
        return slice(oy, oy + (self.y1 - self.y0) * s), slice(ox, ox + (self.x1 - self.x0) * s)

    @property
    def hr_pixels_read(self) -> int:
        return (self.ey1 - self.ey0) * (self.ex1 - self.ex0)


def tile_size_lr(tile_hr: int | None, scale: int, h_lr: int, w_lr: int) -> int:
    """The tile edge in LR pixels for a requested edge in HR pixels (``None``: whole image).

    HR tiles must hold whole LR blocks, so the edge is rounded down to a multiple of the
    scale (at least one block)."""
    if tile_hr is None or tile_hr <= 0:
        return max(h_lr, w_lr, 1)
    return max(1, int(tile_hr) // int(scale))


def plan_tiles(h_lr: int, w_lr: int, tile_lr: int, halo: int = 1,
               balanced: bool = False, region: tuple[int, int, int, int] | None = None) -> list[Tile]:
    """Row-major tiles of ``tile_lr × tile_lr`` LR pixels covering an ``h_lr × w_lr`` scan
    (or only its ``region`` ``(y0, y1, x0, x1)``; the reads still reach into the rest).

    ``balanced``: as many tiles per axis, but of equal sizes (≤ ``tile_lr``), so that no
    sliver of a tile pays a whole halo (for pieces computed in memory; the tiles of a
    Zarr output stay chunk-sized)."""
    ry0, ry1, rx0, rx1 = region or (0, h_lr, 0, w_lr)
    ty = tx = tile_lr
    if balanced:
        ty = -(-(ry1 - ry0) // -(-(ry1 - ry0) // tile_lr))
        tx = -(-(rx1 - rx0) // -(-(rx1 - rx0) // tile_lr))
    tiles = []
    for y0 in range(ry0, ry1, ty):
        y1 = min(y0 + ty, ry1)
        for x0 in range(rx0, rx1, tx):
            x1 = min(x0 + tx, rx1)
            tiles.append(Tile(y0, y1, x0, x1, max(0, y0 - halo), min(h_lr, y1 + halo),
                              max(0, x0 - halo), min(w_lr, x1 + halo)))
    return tiles


def run_tile(forward: Callable[[np.ndarray, np.ndarray], np.ndarray], tile: Tile, scale: int,
             lr_read: np.ndarray, rgb_read: np.ndarray) -> np.ndarray:
    """Run ``forward`` on a tile's read region and return its core ``(B, ty·s, tx·s)``."""
    out = forward(lr_read, rgb_read)
    cy, cx = tile.core_in_read(scale)
    return out[:, cy, cx]


def infer_tiled(forward: Callable[[np.ndarray, np.ndarray], np.ndarray], maps_lr: np.ndarray,
                rgb: np.ndarray, scale: int, tile_hr: int | None = None, halo: int = 1,
                progress: Callable[[int, int], None] | None = None,
                core: tuple[int, int, int, int] | None = None, margin: int = 0) -> np.ndarray:
    """Super-resolve in-memory arrays tile by tile (``tile_hr=None``: one whole-image pass).

    ``forward(lr, rgb)`` maps ``(B, h, w)`` and ``(3, s·h, s·w)`` to ``(B, s·h, s·w)``.
    ``core`` ``(y0, y1, x0, x1)`` in LR pixels: compute and return only that part (its
    tiles read their halo from around it: the arrays are an I/O tile with its halo, so no
    piece recomputes the I/O tile's halo as output that is then thrown away).
    ``margin``: ``forward`` returns only the core of its input, without ``margin`` LR pixels
    on each side (a model with ``margin_lr``, through :func:`maxrf_infer.run_graph`); each
    piece is then given its halo, edge-padded where it passes the arrays' edges (which is
    what the model does there itself), and its output is kept whole (``halo = margin``).
    """
    b, h, w = maps_lr.shape
    cy0, cy1, cx0, cx1 = core or (0, h, 0, w)
    if margin:
        return _infer_core(forward, maps_lr, rgb, scale, tile_hr, margin, progress, (cy0, cy1, cx0, cx1))
    out = np.empty((b, (cy1 - cy0) * scale, (cx1 - cx0) * scale), dtype=np.float32)
    tiles = plan_tiles(h, w, tile_size_lr(tile_hr, scale, cy1 - cy0, cx1 - cx0), halo,
                       balanced=True, region=(cy0, cy1, cx0, cx1))
    for i, t in enumerate(tiles):
        ly, lx = t.read_lr()
        hy, hx = t.read_hr(scale)
        wy, wx = t.write_hr(scale)
        wy = slice(wy.start - cy0 * scale, wy.stop - cy0 * scale)
        wx = slice(wx.start - cx0 * scale, wx.stop - cx0 * scale)
        out[:, wy, wx] = run_tile(forward, t, scale, maps_lr[:, ly, lx], rgb[:, hy, hx])
        if progress:
            progress(i + 1, len(tiles))
    return out


def _infer_core(forward, maps_lr, rgb, scale, tile_hr, margin, progress, core) -> np.ndarray:
    """:func:`infer_tiled` for a ``forward`` that returns its input's core (``margin``)."""
    b, h, w = maps_lr.shape
    cy0, cy1, cx0, cx1 = core
    m, s = int(margin), int(scale)
    # the pieces read at most ``m`` beyond the core: pad only the sides where that leaves the array
    pads = [max(0, m - cy0), max(0, cy1 + m - h), max(0, m - cx0), max(0, cx1 + m - w)]
    if any(pads):
        maps_lr = np.pad(maps_lr, ((0, 0), tuple(pads[:2]), tuple(pads[2:])), mode="edge")
        rgb = np.pad(rgb, ((0, 0), (pads[0] * s, pads[1] * s), (pads[2] * s, pads[3] * s)), mode="edge")
        cy0, cy1, cx0, cx1 = cy0 + pads[0], cy1 + pads[0], cx0 + pads[2], cx1 + pads[2]
    out = np.empty((b, (cy1 - cy0) * s, (cx1 - cx0) * s), dtype=np.float32)
    tiles = plan_tiles(maps_lr.shape[1], maps_lr.shape[2], tile_size_lr(tile_hr, s, cy1 - cy0, cx1 - cx0),
                       m, balanced=True, region=(cy0, cy1, cx0, cx1))
    for i, t in enumerate(tiles):
        ly, lx = t.read_lr()
        hy, hx = t.read_hr(s)
        out[:, (t.y0 - cy0) * s:(t.y1 - cy0) * s, (t.x0 - cx0) * s:(t.x1 - cx0) * s] = \
            forward(maps_lr[:, ly, lx], rgb[:, hy, hx])
        if progress:
            progress(i + 1, len(tiles))
    return out
