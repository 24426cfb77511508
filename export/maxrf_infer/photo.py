"""The photograph as the generator saw it: the registration field an exported model carries.

A generator trained with ``proposed[register=lr]`` (ours, issue 22) never saw the
photograph as given: before training, a displacement field ``e`` was estimated on the LR
grid (``photo_prep.estimate_field``) and the photograph was sampled at ``u + e(u)``.  The
export stores that field in the model's metadata (``photo_field``, below) and the runtime
samples the photograph the same way before the graph sees it, so the exported model
reproduces the run's maps.  The field belongs to the scan it was estimated on: a scan of
another LR size is refused.

``photo_field`` (a JSON object in ``metadata_props``, format ``maxrf-photo-field/1``)::

    {"format": "maxrf-photo-field/1", "grid": "lr", "shape": [2, h_lr, w_lr],
     "dtype": "<f8", "encoding": "base64", "data": "...",
     "units": "HR pixels", "components": ["dy", "dx"], "max_abs": 1.73, "margin_hr": 3}

``data``: the ``(2, h_lr, w_lr)`` little-endian float64 field, base64; values at the LR
pixel centres.  How it is applied (exactly what the training did, ``method.registered_photo``):

1. to the HR grid bilinearly between LR pixel centres, clamped at the edges: HR pixel
   ``j`` sits at LR coordinate ``clip((j + ½)/s − ½, 0, h_lr − 1)``
   (``scipy.ndimage.map_coordinates``, order 1);
2. the photograph ``(3, H, W)`` sampled at ``u + e(u)`` bilinearly, border values outside
   (``map_coordinates(order=1, mode="nearest")``), clipped to [0, 1], float32.

Both steps are local: an HR region of the registered photograph needs the photograph
within ``ceil(max |e|) + 1`` HR pixels of it (``margin_hr``), so a tile read with that
margin gives exactly the whole image's registered photograph on the tile.
"""
from __future__ import annotations

import base64
import math
from pathlib import Path

import numpy as np

#: the metadata key and the format of the registration field
FIELD_KEY = "photo_field"
FIELD_FORMAT = "maxrf-photo-field/1"


class FieldError(ValueError):
    """A malformed ``photo_field`` (the caller turns it into its own one-line error)."""


def field_record(field_lr: np.ndarray) -> dict:
    """The ``photo_field`` metadata of a ``(2, h_lr, w_lr)`` field (HR pixels, ``(dy, dx)``)."""
    a = np.ascontiguousarray(field_lr, dtype="<f8")
    if a.ndim != 3 or a.shape[0] != 2 or not np.isfinite(a).all():
        raise FieldError(f"a registration field must be finite with shape (2, h_lr, w_lr), found "
                         f"shape {a.shape}")
    top = float(np.abs(a).max()) if a.size else 0.0
    return {"format": FIELD_FORMAT, "grid": "lr", "shape": list(a.shape), "dtype": "<f8",
            "encoding": "base64", "data": base64.b64encode(a.tobytes()).decode("ascii"),
            "units": "HR pixels", "components": ["dy", "dx"], "max_abs": top,
            "margin_hr": margin_of(a)}


def read_field(record) -> np.ndarray:
    """``(2, h_lr, w_lr)`` float64 from a ``photo_field`` record (:class:`FieldError` if bad)."""
    if not isinstance(record, dict) or record.get("format") != FIELD_FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise FieldError(f"'photo_field' must be an object of format {FIELD_FORMAT!r}, found {found!r:.60}")
    shape = record.get("shape")
    if (not isinstance(shape, list) or len(shape) != 3 or shape[0] != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)):
        raise FieldError(f"'photo_field' shape must be [2, h_lr, w_lr], found {shape!r:.60}")
    if record.get("dtype") != "<f8" or record.get("encoding") != "base64":
        raise FieldError(f"'photo_field' must be base64 '<f8', found dtype {record.get('dtype')!r:.20}, "
                         f"encoding {record.get('encoding')!r:.20}")
    try:
        raw = base64.b64decode(str(record.get("data", "")), validate=True)
    except ValueError:
        raise FieldError("'photo_field' data is not base64") from None
    if len(raw) != 8 * shape[0] * shape[1] * shape[2]:
        raise FieldError(f"'photo_field' data holds {len(raw)} bytes, expected "
                         f"{8 * shape[0] * shape[1] * shape[2]} for shape {shape}")
    field = np.frombuffer(raw, dtype="<f8").reshape(shape).astype(np.float64)
    if not np.isfinite(field).all():
        raise FieldError("'photo_field' holds non-finite displacements")
    return field


def margin_of(field_lr: np.ndarray) -> int:
    """HR pixels of photograph a region needs beyond its edge: ``ceil(max |e|) + 1`` (the
    HR field interpolates the LR values, so it never exceeds their largest magnitude)."""
    top = float(np.abs(field_lr).max()) if np.size(field_lr) else 0.0
    return int(math.ceil(top)) + 1


def hr_field(field_lr: np.ndarray, scale: int, ys: slice, xs: slice) -> np.ndarray:
    """The field on the HR pixels ``ys × xs`` (``(2, ny, nx)``): bilinear between the LR
    pixel centres, clamped (the same arithmetic, pixel for pixel, as on the whole grid)."""
    from scipy import ndimage

    h, w = field_lr.shape[-2:]
    yy = (np.arange(ys.start, ys.stop) + 0.5) / scale - 0.5
    xx = (np.arange(xs.start, xs.stop) + 0.5) / scale - 0.5
    Y, X = np.meshgrid(np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1), indexing="ij")
    return np.stack([ndimage.map_coordinates(c, [Y, X], order=1, mode="nearest") for c in field_lr])


def registered_region(read: np.ndarray, origin: tuple[int, int], ys: slice, xs: slice,
                      field_lr: np.ndarray, scale: int) -> np.ndarray:
    """The registered photograph on the HR pixels ``ys × xs``, from ``read``: the photograph
    ``(3, ·, ·)`` read from ``origin`` (HR row, column), holding ``ys × xs`` grown by
    :func:`margin_of` pixels wherever the scan extends that far (clipped at the scan's edge,
    where border values are the scan's own)."""
    from scipy import ndimage

    e = hr_field(field_lr, scale, ys, xs)
    yy, xx = np.meshgrid(np.arange(ys.start, ys.stop, dtype=np.float64),
                         np.arange(xs.start, xs.stop, dtype=np.float64), indexing="ij")
    # coordinates in the whole photograph, then in the region read (an exact integer shift)
    coords = [yy + e[0] - origin[0], xx + e[1] - origin[1]]
    read = np.asarray(read, np.float32)
    out = np.stack([ndimage.map_coordinates(band, coords, order=1, mode="nearest") for band in read])
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def registered_photo(rgb: np.ndarray, field_lr: np.ndarray | None, scale: int) -> np.ndarray:
    """The whole photograph ``(3, H, W)`` as the generator saw it (unchanged without a field)."""
    if field_lr is None:
        return rgb
    check_shape(field_lr, rgb.shape[-2], rgb.shape[-1], scale, "the photograph")
    return registered_region(rgb, (0, 0), slice(0, rgb.shape[-2]), slice(0, rgb.shape[-1]),
                             field_lr, scale)


def read_window(n: int, ys: slice, margin: int) -> slice:
    """``ys`` grown by ``margin`` on both sides, clipped to ``[0, n)``."""
    return slice(max(0, ys.start - margin), min(n, ys.stop + margin))


def check_shape(field_lr: np.ndarray, height: int, width: int, scale: int, what: str,
                model: Path | str | None = None) -> None:
    """:class:`FieldError` when ``what`` (``height × width`` HR pixels) is not the LR grid the
    field was estimated on."""
    h, w = field_lr.shape[-2:]
    if (height, width) != (h * scale, w * scale):
        name = f"model {Path(model).name} " if model is not None else "the model "
        raise FieldError(
            f"{name}was trained on a photograph registered to its scan (proposed register=lr): its "
            f"registration field covers {h}×{w} LR pixels ({h * scale}×{w * scale} HR), but {what} is "
            f"{height // scale}×{width // scale} LR ({height}×{width} HR); the registration belongs to "
            "the scan it was estimated on: run and export again on this scan")
