"""``+F`` (ours): a super-resolved map fused with the HR-step scan of a shorter dwell that its
LR maps were binned from, per pixel by that scan's counting noise::

    F = S + w ⊙ (Y − S),    w = d² / (d² + σ²),    d² = max(G_window * ((Y − S)² − (1 + κ)σ²), 0)

``S`` the method's (or the exported model's) output, ``Y`` the short-dwell scan, ``σ²`` its
noise variance, ``d²`` the variance of the detail ``S`` misses in a Gaussian window (:func:`fuse`,
any units).

``+F`` applies it to counts in the Anscombe domain (version 2, :func:`fuse_counts`): with
``λ = t·c`` the counts of the short scan itself (``c`` per the dwell the maps are given in,
``t`` its relative dwell), ``z = 2√(λ + 3/8)`` has variance ≈ 1 (plus ``g²λ`` for a gain excess
``g``), so ``σ²`` no longer depends on an estimate of ``λ`` and a pixel that counts 1 where ``S``
expects 0.05 is not read as detail.  Version 1 fused the counts directly with ``σ² = c/t +
(g·c)²`` at ``S``: below about 1/16 of the dwell (a few counts per pixel) the skewed Poisson
residuals raised ``d²`` and let the scan's noise through (tuning scenes virgin-102 and
isabel-101 at 256², t = 1/64: the worst map 4.9 / 6.3 dB below ``+W``; version 2: 0.4 / 0.2;
docs/noise.md).  Where ``w`` is 0 or 1 the inverse ``(z/2)² − 3/8`` returns ``S`` (≥ 0) or
``Y`` exactly.  The host (``maxrf_bench.noise``, the ``+F`` column of a run) and
``maxrf-infer --fuse`` (tile by tile, :func:`fuse_pass`) share this one implementation.

Tiles: the window is a Gaussian of std ``FUSE_WINDOW`` HR px truncated at ``TRUNCATE`` stds
(scipy's default), so a tile's fused pixels depend on ``S`` and ``Y`` up to :func:`halo_px`
pixels away; the pass reads that halo from the finished model output and the scan, fuses the
window and keeps its own core (reflected at the scan's true borders, as on the whole scan).
"""
from __future__ import annotations

import numpy as np

#: std (HR pixels) of the Gaussian window in which ``d²`` is estimated; chosen on the tuning
#: scene sim-virgin seed 102 at 256² (tests/benchmarks/bench_short_dwell_fusion.py: one variance
#: per map instead lost up to 8.3 dB on maps whose detail sits in edges)
FUSE_WINDOW = 3.0
#: ``scipy.ndimage.gaussian_filter``'s truncation (in stds)
TRUNCATE = 4.0


def halo_px(window: float = FUSE_WINDOW) -> int:
    """How far (HR px) a fused pixel sees: the radius of the truncated Gaussian window."""
    return int(TRUNCATE * float(window) + 0.5)


def fuse(sr: np.ndarray, maps_dwell: np.ndarray, noise_var, window: float = FUSE_WINDOW,
         margin: float = 0.0) -> np.ndarray:
    """``F`` of the module docstring on ``(element, y, x)`` maps (float64 in, float64 out).
    ``noise_var``: ``σ²``, an array broadcast to the maps or a callable that gives it at ``S``;
    ``margin``: κ."""
    s = np.asarray(sr, np.float64)
    y = np.asarray(maps_dwell, np.float64)
    var = noise_var(s) if callable(noise_var) else noise_var
    var = np.broadcast_to(np.asarray(var, np.float64), s.shape)
    out = np.empty(s.shape, np.float64)
    for e in range(s.shape[0]):  # one map at a time: its temporaries stay in the CPU's cache
        out[e] = _fuse_map(s[e], y[e], var[e], window, margin)
    return out


def _fuse_map(s: np.ndarray, y: np.ndarray, var: np.ndarray, window: float, margin: float) -> np.ndarray:
    """:func:`fuse` of one map (float64)."""
    from scipy.ndimage import gaussian_filter

    r = y - s
    d2 = r * r
    d2 -= (1.0 + margin) * var
    d2 = gaussian_filter(d2, window, truncate=TRUNCATE)
    np.maximum(d2, 0.0, out=d2)
    den = d2 + var
    w = np.divide(d2, den, out=np.ones_like(den), where=den > 0)
    w *= r
    w += s
    return w


def fuse_counts(sr_counts: np.ndarray, dwell_counts: np.ndarray, dwell_time: float = 1.0,
                gain_cv: float = 0.0, window: float = FUSE_WINDOW, margin: float = 0.0,
                threads: int = 1) -> np.ndarray:
    """``+F`` (version 2) on maps in counts (``(element, y, x)``, per the dwell they are given
    in; the scan counted ``dwell_time`` of that dwell): :func:`fuse` in the Anscombe domain of
    the scan's own counts, ``σ² = 1 + g²λ`` at ``S`` (the module docstring); ``margin``: κ of
    :func:`fuse` (``+F`` uses 0).  Float64 out, ≥ 0.  One map at a time, ``threads`` maps at
    once (numpy and scipy's filters release the GIL; the same values whatever ``threads``)."""
    t = float(dwell_time)
    g2 = float(gain_cv) ** 2
    out = np.empty(np.shape(sr_counts), np.float64)

    def one(e: int) -> None:
        lam_s = np.maximum(np.asarray(sr_counts[e], np.float64), 0.0)
        lam_s *= t
        lam_y = np.maximum(np.asarray(dwell_counts[e], np.float64), 0.0)
        lam_y *= t
        # σ² = 1 + g²λ; exactly 1 without a gain excess (a scalar: no array to read)
        var = 1.0 + g2 * lam_s if g2 else np.float64(1.0)
        z = _fuse_map(_anscombe(lam_s), _anscombe(lam_y), var, window, margin)
        z /= 2.0
        z **= 2
        z -= 0.375
        np.maximum(z, 0.0, out=z)
        z /= t
        out[e] = z

    if threads > 1 and out.shape[0] > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(int(threads), out.shape[0])) as pool:
            list(pool.map(one, range(out.shape[0])))
    else:
        for e in range(out.shape[0]):
            one(e)
    return out


def _anscombe(lam: np.ndarray) -> np.ndarray:
    """``2√(λ + 3/8)``, in place of ``lam``."""
    lam += 0.375
    np.sqrt(lam, out=lam)
    lam *= 2.0
    return lam


def dwell_attrs(attrs) -> tuple[float, float]:
    """``(t, g)`` of a scan store: its ``maps_dwell_time`` (default 1: raw counts) and its
    recorded gain excess ``scanner_gain_cv`` (default 0)."""
    from .validate import scanner_noise

    return float(attrs.get("maps_dwell_time", 1.0) or 1.0), scanner_noise(attrs)[0]


def fuse_pass(tiles, out_path: str, scan_path: str, scale: int, *, window: float = FUSE_WINDOW,
              read_dwell=None, threads: int = 1, on_tile=None, cache_bytes: int = 64 << 20) -> None:
    """``maxrf-infer --fuse``: ``+F`` on the maps the tiles wrote to ``out_path`` (in counts),
    with the scan's ``maps_dwell``, in place.  Each tile's window grows by :func:`halo_px`,
    and a halo must read the model's output, never a neighbour's fused pixels: tiles run in
    row-major order, and before a tile's fused core overwrites ``maps`` the parts of its model
    output that a later window reads (its last ``halo`` rows and columns) are kept in memory
    and pasted over whatever the window reads there.  Memory: one tile and its halo, the bands
    of the last two rows of tiles (about ``4 × halo × width`` values per element: 16 MB at
    4096²×21), and the last ``cache_bytes`` of decoded chunks of each array read
    (:func:`chunk_reader`; a cached chunk of ``maps`` that predates a write is only stale where
    a band is pasted); ``threads`` maps of a tile at once; ``on_tile()`` after each tile (a
    progress bar)."""
    import zarr

    group = zarr.open_group(out_path, mode="r+")
    maps = group["maps"]
    _, h, w = maps.shape
    scan = zarr.open_group(scan_path, mode="r")
    dwell = read_dwell or chunk_reader(scan["maps_dwell"], cache_bytes).read
    model_out = chunk_reader(maps, cache_bytes).read
    t, g = dwell_attrs(scan.attrs)
    halo = halo_px(window)
    kept: list[tuple[slice, slice, np.ndarray]] = []     # unfused output a later window reads
    for tile in sorted(tiles, key=lambda tl: (tl.y0, tl.x0)):
        wy, wx = tile.write_hr(scale)
        ry = slice(max(wy.start - halo, 0), min(wy.stop + halo, h))
        rx = slice(max(wx.start - halo, 0), min(wx.stop + halo, w))
        # later tiles start at this row or below: bands above every later window are done
        kept = [band for band in kept if band[0].stop > ry.start]
        s = model_out(ry, rx)
        for by, bx, values in kept:
            oy, ox = _overlap(by, ry), _overlap(bx, rx)
            if oy is not None and ox is not None:
                s[:, oy.start - ry.start:oy.stop - ry.start, ox.start - rx.start:ox.stop - rx.start] = \
                    values[:, oy.start - by.start:oy.stop - by.start, ox.start - bx.start:ox.stop - bx.start]
        cy = slice(wy.start - ry.start, wy.stop - ry.start)
        cx = slice(wx.start - rx.start, wx.stop - rx.start)
        core = s[:, cy, cx]
        by = slice(max(wy.start, wy.stop - halo), wy.stop)   # read by the rows of tiles below
        bx = slice(max(wx.start, wx.stop - halo), wx.stop)   # and by the next tiles of this row
        kept.append((by, wx, core[:, by.start - wy.start:, :].copy()))
        kept.append((wy, bx, core[:, :, bx.start - wx.start:].copy()))
        f = fuse_counts(s, dwell(ry, rx), t, g, window, threads=threads)
        maps[:, wy, wx] = f[:, cy, cx].astype(np.float32)
        if on_tile is not None:
            on_tile()


def _overlap(a: slice, b: slice) -> slice | None:
    """The intersection of two slices with explicit bounds (None when empty)."""
    lo, hi = max(a.start, b.start), min(a.stop, b.stop)
    return slice(lo, hi) if lo < hi else None


def chunk_reader(array, budget: int = 64 << 20):
    """:class:`maxrf_infer.stream.ChunkCache` of ``array`` holding at most ``budget`` bytes of
    decoded chunks (at least 4): a tile with its halo overlaps up to 3 × 3 chunks and the next
    tile of its row most of the same ones, so a chunk is decoded about once per row of tiles
    that reads it (up to 3 times) instead of once per tile (up to 9)."""
    from .stream import ChunkCache

    per_chunk = array.shape[0] * int(np.prod(array.chunks[-2:])) * np.dtype(array.dtype).itemsize
    return ChunkCache(array, max_chunks=max(4, budget // max(per_chunk, 1)))
