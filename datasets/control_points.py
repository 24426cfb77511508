"""Register a photograph to the maps with clicked control points or a known homography,
and orient raw scans (flip, rotate).

Users register a photograph to a scan by clicking corresponding points (maxrf4u, the Van
Gogh Museum's XRF explorer and the National Gallery's tools all work so), or they have a
homography from earlier work.  Either one becomes a 3×3 matrix ``H`` that maps photograph
pixels to map pixels, and :func:`warp_photo` samples the photograph on the map grid (or on
its ``upsample``× refinement) through ``H⁻¹``.

Coordinates are pixels, ``x`` = column and ``y`` = row, with the centre of the top-left
pixel at ``(0, 0)`` (as napari, scikit-image and OpenCV count).  Map pixels are those of
the maps as imported, after ``--rotate``/``--flip``; with ``--lr`` they are the measured
(low-resolution) map pixels.

The control-point CSV has a header with the columns ``photo_x,photo_y,map_x,map_y`` (other
columns, such as a label, are ignored) and at least 4 rows.  The homography is estimated
with scikit-image's :class:`~skimage.transform.ProjectiveTransform` (normalised DLT, least
squares over all pairs); the residual at the points is reported (it is 0 by construction
with exactly 4 pairs).  A set whose points are (nearly) collinear, repeated, or otherwise do
not determine a homography is refused with one line.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np

import maxrf_bench as mb

COLUMNS = ("photo_x", "photo_y", "map_x", "map_y")
MAX_BYTES = 10 * 2**20  # a control-point or matrix file is a few lines; refuse anything huge
ROTATIONS = (0, 90, 180, 270)
FLIPS = ("none", "horizontal", "vertical")


def _read_small(path: str | os.PathLike, what: str, expected: str, text: bool = True):
    path = Path(path)
    if not path.is_file():
        raise mb.ConfigError(f"{what}: {str(path)!r} does not exist or is not a file; expected "
                             f"{expected}")
    if path.stat().st_size > MAX_BYTES:
        raise mb.ConfigError(f"{what}: expected {expected} (a few lines), found a file of "
                             f"{path.stat().st_size} bytes at {str(path)!r}")
    if not text:
        return path
    try:
        return path.read_text(encoding="utf-8-sig")
    except (UnicodeDecodeError, OSError) as exc:
        raise mb.ConfigError(f"{what}: cannot read {str(path)!r} as text ({type(exc).__name__}); "
                             f"expected {expected}") from None


def read_control_points(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(photo_xy, map_xy)``, each ``(N, 2)`` float, from a CSV with the columns
    ``photo_x,photo_y,map_x,map_y``; at least 4 finite pairs."""
    expected = "a CSV with the header photo_x,photo_y,map_x,map_y and at least 4 point pairs"
    text = _read_small(path, "--control-points", expected)
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0] if text.strip() else ",", ",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise mb.ConfigError(f"--control-points {str(path)!r}: expected {expected}, found the "
                             f"columns {', '.join(header) or 'none'} (missing {', '.join(missing)})")
    rows = []
    for i, row in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): v for k, v in row.items()}
        if all(not str(row.get(c) or "").strip() for c in COLUMNS):
            continue  # a blank line
        try:
            values = [float(str(row[c]).strip()) for c in COLUMNS]
        except (TypeError, ValueError):
            raise mb.ConfigError(f"--control-points {str(path)!r} line {i}: expected four numbers "
                                 f"(pixels), found {[row.get(c) for c in COLUMNS]}") from None
        if not np.all(np.isfinite(values)):
            raise mb.ConfigError(f"--control-points {str(path)!r} line {i}: expected finite "
                                 f"pixel coordinates, found {values}")
        rows.append(values)
    if len(rows) < 4:
        raise mb.ConfigError(f"--control-points {str(path)!r}: expected at least 4 point pairs "
                             f"(a homography has 8 degrees of freedom), found {len(rows)}")
    a = np.asarray(rows, dtype=float)
    return a[:, :2], a[:, 2:]


def read_homography(path: str | os.PathLike) -> np.ndarray:
    """A 3×3 matrix (photograph px → map px) from a text file (3 rows of 3 numbers,
    separated by spaces or commas), a JSON list of lists, or a ``.npy`` file; normalised so
    that ``H[2, 2] = 1``."""
    expected = "a 3×3 matrix (photograph px → map px): 3 rows of 3 numbers, JSON or .npy"
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            h = np.load(_read_small(path, "--homography", expected, text=False), allow_pickle=False)
        else:
            text = _read_small(path, "--homography", expected).strip()
            if text.startswith("["):
                h = np.asarray(json.loads(text), dtype=float)
            else:
                h = np.asarray([[float(v) for v in line.replace(",", " ").split()]
                                for line in text.splitlines()
                                if line.strip() and not line.lstrip().startswith("#")], dtype=float)
    except mb.MaxrfError:
        raise
    except (ValueError, TypeError, OSError) as exc:
        raise mb.ConfigError(f"--homography {str(path)!r}: expected {expected}, found "
                             f"unreadable content ({type(exc).__name__}: {exc})") from None
    h = np.asarray(h, dtype=float)
    if h.shape != (3, 3) or not np.all(np.isfinite(h)):
        raise mb.ConfigError(f"--homography {str(path)!r}: expected {expected}, found an array "
                             f"of shape {h.shape}" + ("" if h.shape != (3, 3) else " with non-finite values"))
    if abs(h[2, 2]) < 1e-12 or abs(np.linalg.det(h)) < 1e-12 * max(1.0, np.abs(h).max() ** 3):
        raise mb.ConfigError(f"--homography {str(path)!r}: expected an invertible 3×3 matrix with "
                             f"H[2,2] ≠ 0, found a singular one (det {np.linalg.det(h):.3g})")
    return h / h[2, 2]


def _normalise(pts: np.ndarray) -> np.ndarray:
    c = pts - pts.mean(0)
    scale = np.sqrt(2) / max(np.sqrt((c ** 2).sum(1)).mean(), 1e-12)
    return c * scale


def check_points(photo_xy: np.ndarray, map_xy: np.ndarray, where: str = "--control-points") -> None:
    """Refuse point sets that do not determine a homography (one line, ConfigError)."""
    for name, pts in (("photograph", photo_xy), ("map", map_xy)):
        c = pts - pts.mean(0)
        sv = np.linalg.svd(c, compute_uv=False)
        if sv[0] <= 1e-9 or sv[1] <= 1e-6 * sv[0]:
            raise mb.ConfigError(f"{where}: expected at least 4 point pairs not all on one line, "
                                 f"found {len(pts)} {name} points on a line (or all the same); "
                                 "spread them over the painting")
        if len({tuple(np.round(p, 6)) for p in pts}) < len(pts):
            raise mb.ConfigError(f"{where}: expected distinct points, found the same {name} "
                                 "point twice")
    # the normalised DLT system has a one-dimensional null space exactly when the pairs
    # determine a homography (e.g. no three of four points on one line)
    p, q = _normalise(photo_xy), _normalise(map_xy)
    rows = []
    for (x, y), (u, v) in zip(p, q):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
    a = np.asarray(rows + [[0.0] * 9] * max(0, 9 - len(rows)))
    sv = np.linalg.svd(a, compute_uv=False)
    if sv[-2] <= 1e-6 * sv[0]:
        raise mb.ConfigError(f"{where}: the {len(p)} point pairs do not determine a homography "
                             "(three of four points on one line, or a degenerate layout); expected "
                             "at least 4 pairs, no three of any four on one line")


def estimate_homography(photo_xy: np.ndarray, map_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(H, residuals)``: the least-squares homography photograph px → map px, and the
    distance (map px) between each mapped photograph point and its map point."""
    from skimage.transform import ProjectiveTransform

    check_points(photo_xy, map_xy)
    if hasattr(ProjectiveTransform, "from_estimate"):
        tform = ProjectiveTransform.from_estimate(photo_xy, map_xy)
        ok = bool(tform)
    else:  # scikit-image < 0.26
        tform = ProjectiveTransform()
        ok = tform.estimate(photo_xy, map_xy)
    h = np.asarray(getattr(tform, "params", np.full((3, 3), np.nan)), dtype=float)
    if not ok or not np.all(np.isfinite(h)) or abs(h[2, 2]) < 1e-12:
        raise mb.ConfigError("--control-points: the point pairs do not determine a homography "
                             "(the estimate failed); expected at least 4 pairs spread over the "
                             "painting, no three of any four on one line")
    h = h / h[2, 2]
    return h, np.hypot(*(apply_homography(h, photo_xy) - map_xy).T)


def apply_homography(h: np.ndarray, xy: np.ndarray) -> np.ndarray:
    xy = np.asarray(xy, dtype=float)
    p = np.c_[xy, np.ones(len(xy))] @ np.asarray(h).T
    return p[:, :2] / p[:, 2:3]


def warp_photo(photo: np.ndarray, h: np.ndarray, grid_shape: tuple[int, int], *,
               upsample: int = 1, order: int = 3) -> tuple[np.ndarray, float]:
    """Sample ``photo`` ``(band, Hp, Wp)`` on the map grid ``grid_shape`` refined
    ``upsample`` times through the homography ``h`` (photograph px → map px).

    Returns the warped photograph ``(band, H·upsample, W·upsample)`` in [0, 1] and the
    fraction of its pixels whose centre falls outside the photograph (filled from its
    nearest edge).  A Gaussian pre-filter of σ = (r − 1)/2 photograph pixels, r the local
    reduction factor at the grid centre, removes what the output grid cannot hold."""
    from scipy import ndimage

    photo = np.asarray(photo, dtype=np.float32)
    out_shape = (int(grid_shape[0]) * upsample, int(grid_shape[1]) * upsample)
    inv = np.linalg.inv(h)
    ys, xs = np.mgrid[0:out_shape[0], 0:out_shape[1]].astype(np.float64)
    mx, my = (xs + 0.5) / upsample - 0.5, (ys + 0.5) / upsample - 0.5  # map px
    den = inv[2, 0] * mx + inv[2, 1] * my + inv[2, 2]
    px = (inv[0, 0] * mx + inv[0, 1] * my + inv[0, 2]) / den
    py = (inv[1, 0] * mx + inv[1, 1] * my + inv[1, 2]) / den
    # local reduction: photograph px per output px at the grid centre (finite differences)
    cy, cx = out_shape[0] // 2, out_shape[1] // 2
    jx = np.hypot(px[cy, min(cx + 1, out_shape[1] - 1)] - px[cy, cx],
                  py[cy, min(cx + 1, out_shape[1] - 1)] - py[cy, cx])
    jy = np.hypot(px[min(cy + 1, out_shape[0] - 1), cx] - px[cy, cx],
                  py[min(cy + 1, out_shape[0] - 1), cx] - py[cy, cx])
    sigma = [max(0.0, (r - 1.0) / 2.0) for r in (jy, jx)]
    outside = float(np.mean((px < -0.5) | (px > photo.shape[2] - 0.5)
                            | (py < -0.5) | (py > photo.shape[1] - 0.5)))
    out = np.empty((photo.shape[0], *out_shape), dtype=np.float32)
    for b in range(photo.shape[0]):
        band = ndimage.gaussian_filter(photo[b], sigma) if max(sigma) > 0 else photo[b]
        out[b] = ndimage.map_coordinates(band, [py, px], order=order, mode="nearest")
    return np.clip(out, 0.0, 1.0), outside


def orient(maps: np.ndarray, rotate: int = 0, flip: str | None = None) -> tuple[np.ndarray, str]:
    """Maps ``(element, y, x)`` rotated ``rotate`` degrees counter-clockwise, then mirrored
    (``horizontal``: left ↔ right, ``vertical``: top ↔ bottom); and a sentence saying so
    (empty when nothing changed)."""
    rotate = int(rotate or 0) % 360
    if rotate not in ROTATIONS:
        raise mb.ConfigError(f"--rotate: expected one of 0, 90, 180, 270 (degrees counter-"
                             f"clockwise), found {rotate}")
    flip = flip or "none"
    if flip not in FLIPS:
        raise mb.ConfigError(f"--flip: expected one of {', '.join(FLIPS)}, found {flip!r}")
    said = []
    if rotate:
        maps = np.rot90(maps, k=rotate // 90, axes=(-2, -1))
        said.append(f"rotated {rotate}° counter-clockwise")
    if flip == "horizontal":
        maps = maps[..., ::-1]
        said.append("mirrored left ↔ right")
    elif flip == "vertical":
        maps = maps[..., ::-1, :]
        said.append("mirrored top ↔ bottom")
    return np.ascontiguousarray(maps), ", then ".join(said)
