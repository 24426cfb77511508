"""How well does the importer's ``--register`` put the photograph on the map grid?

Measured on the real ``miniature`` (../shared/data/alma_miniature), in map pixels, two ways:

1. **Re-registering a known warp.**  The photograph, registered as the ``miniature``
   dataset registers it (affine), is moved once more by a known affine transform (shift,
   zoom, rotation); :func:`estimate_offset` (each model) estimates it again from the maps.
   Residual: the RMS over the grid of the difference between the true and the recovered
   displacement.  This is the estimator's own error.
2. **Local residual after registration.**  The maps and the registered photograph are cut
   into tiles; in each tile the sub-pixel NCC peak of the gradient magnitudes (the
   importer's own criterion) gives the local shift still left.  Tiles with a clear peak
   (NCC ≥ 0.3) count; the RMS and median of their shift lengths are what the global model
   leaves (non-affine distortion plus the estimator's error).

    .venv/bin/python tests/benchmarks/bench_registration_residual.py
"""
from __future__ import annotations

import sys
import time

import numpy as np

from maxrf_bench_datasets import real
from maxrf_bench_datasets.registration import (_photo_coords, _subpixel_shift, estimate_offset,
                                              gradient_magnitude, resample_photo)


def displacement(shape, offset, matrix):
    """Map-pixel displacement field ``(2, H, W)`` of ``(offset, matrix)`` (photo position − u)."""
    py, px = _photo_coords(shape, shape, shape, 1, offset, matrix)
    yy, xx = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    return np.stack([py - yy, px - xx])


def rot(deg, zoom=1.0):
    t = np.radians(deg)
    return zoom * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def main() -> None:
    folder = real.shared_data_dir() / "alma_miniature"
    if not folder.exists():
        sys.exit(f"no alma_miniature under {real.shared_data_dir()}")
    from PIL import Image

    with np.load(folder / "maps_scalar.npz") as z:
        maps = np.stack([z["As-KB"], z["Cu"]]).astype(np.float32)
        valid = z["valid_mask"]
    photo = np.asarray(Image.open(folder / "VIS_hr.jpg").convert("RGB"), np.float32).transpose(2, 0, 1) / 255
    shape = maps.shape[1:]
    on_grid = resample_photo(photo, shape)
    t0 = time.perf_counter()
    reg = estimate_offset(maps, on_grid, mask=valid, model=real.MINIATURE_REGISTRATION)
    print(f"importer ({real.MINIATURE_REGISTRATION}): {reg.describe()}  [{time.perf_counter() - t0:.1f} s]")
    registered = resample_photo(photo, shape, offset=reg.offset, matrix=reg.matrix)

    print("\n1. re-registering a known warp of the registered photograph (map px, RMS over the grid)")
    cases = [((2.3, -1.7), np.eye(2)), ((-3.1, 0.8), rot(0.3, 1.004)), ((1.2, 2.6), rot(-0.5, 0.995))]
    inner = np.zeros(shape, bool)
    inner[40:-40, 40:-40] = True
    for offset, matrix in cases:
        # move the registered photograph: output u shows it at c + M(u − c) + offset
        moved = resample_photo(registered, shape, offset=offset, matrix=matrix)
        # a feature of the registered photograph at u shows in ``moved`` at T⁻¹(u): that
        # inverse is what estimate_offset should find
        inv = np.linalg.inv(matrix)
        true = displacement(shape, -inv @ np.asarray(offset), inv)
        amp = float(np.sqrt((true ** 2).sum(0)[inner].mean()))
        line = [f"  true RMS {amp:.2f} px (offset {offset}, rot {np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])):+.2f}°,"
                f" zoom {np.sqrt(np.linalg.det(matrix)):.4f}):"]
        for model in ("shift", "similarity", "affine"):
            r = estimate_offset(maps, moved, mask=valid, model=model)
            est = displacement(shape, r.offset, r.matrix)
            res = float(np.sqrt(((est - true) ** 2).sum(0)[inner].mean()))
            line.append(f"{model} {res:.2f}")
        print(" ".join(line))

    print("\n2. local shifts left after the importer's registration (tiles, map px); control: the "
          "As map against the Cu map (same grid: the tile estimator's own spread)")
    g_maps = gradient_magnitude(maps, 1.5, valid)
    g_photo = gradient_magnitude(registered, 1.5)
    tile_shifts(g_maps, g_photo, valid, shape, "photo vs maps")
    tile_shifts(gradient_magnitude(maps[:1], 1.5, valid), gradient_magnitude(maps[1:], 1.5, valid),
                valid, shape, "As vs Cu (control)")


def tile_shifts(g_maps, g_photo, valid, shape, what):
    for tile in (128, 96):
        margin = 6
        shifts = []
        for y0 in range(0, shape[0] - tile + 1, tile):
            for x0 in range(0, shape[1] - tile + 1, tile):
                sl = (slice(y0, y0 + tile), slice(x0, x0 + tile))
                if valid[sl].mean() < 0.9:
                    continue
                s, peak = _subpixel_shift(g_maps[sl], g_photo[sl], margin)
                if peak >= 0.3 and np.all(np.abs(s) < margin):
                    shifts.append(s)
        s = np.array(shifts)
        length = np.hypot(s[:, 0], s[:, 1])
        if not len(s):
            print(f"  {what}, tiles {tile}×{tile}: no tile with a clear peak")
            continue
        print(f"  {what}, tiles {tile}×{tile}: {len(s)} with a clear peak; RMS {np.sqrt((length ** 2).mean()):.2f} px, "
              f"median {np.median(length):.2f} px, 90th percentile {np.percentile(length, 90):.2f} px; "
              f"mean shift (dy, dx) = ({s[:, 0].mean():+.2f}, {s[:, 1].mean():+.2f})")


if __name__ == "__main__":
    main()
