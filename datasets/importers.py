"""Importers: turn the scans people have into maxrf-bench scans.

Sources (detected by :func:`import_source`):

* a **folder of element-map images** as PyMca, Bruker M6 or Datamuncher export them: TIFF
  (8/16-bit integer, 32-bit float; ``tifffile``) or PNG (8/16-bit; Pillow), one element per
  file, the element line read from the file name (:mod:`.labels`);
* a **raw spectral cube**: Bruker/Lispix RPL+RAW, or Bruker BCF, read with
  ``rosettasciio`` and integrated over line windows (:func:`integrate_lines`);
* **HDF5 maps in the PyXRF layout** (``xrfmap/detsum/xrf_fit`` ``(element, y, x)`` and
  ``xrfmap/detsum/xrf_fit_name``), read with ``h5py``.

Each needs a photograph (``--rgb``), put on the grid of the maps (or on the ``scale``×
grid with ``--lr``, when the maps are the measured low-resolution scan), optionally
registered to them (:mod:`.registration`).  Everything is read and checked before anything
is written, and :func:`maxrf_bench.save_scan` writes atomically, so bad input leaves no
half-written store.  What was done is reported through ``echo`` and kept in the scan's
``import_notes`` attribute.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import xarray as xr

import maxrf_bench as mb

from .labels import LabelError, LineLabel, line_window_kev, parse_label
from .registration import MODELS, Registration, estimate_offset, resample_photo

MAP_SUFFIXES = (".tif", ".tiff", ".png")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
CUBE_SUFFIXES = (".rpl", ".raw", ".bcf")
H5_SUFFIXES = (".h5", ".hdf5", ".hdf")
#: default detector resolution, FWHM at Mn Kα (eV), typical of the SDDs of MA-XRF scanners
DEFAULT_FWHM_MNKA_EV = 145.0

Echo = Callable[[str], None]


class _Notes:
    """Collects what an import did: echoed at once and kept in the scan attributes."""

    def __init__(self, echo: Echo | None):
        self.echo = echo
        self.lines: list[str] = []

    def __call__(self, text: str) -> None:
        self.lines.append(text)
        if self.echo is not None:
            self.echo(text)


# --- reading images -------------------------------------------------------------------

def _check_tiff_sizes(path: Path) -> None:
    """A TIFF's declared image must fit the file (uncompressed strips) and the import cap."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0] if tif.series else None
        if series is None:
            return
        shape, dtype = tuple(series.shape), np.dtype(series.dtype)
        n = int(np.prod(shape, dtype=np.float64))
        page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
        if getattr(page, "compression", 1) == 1 and len(tif.pages) == 1:
            ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts)]
            declared = n * dtype.itemsize
            if ends and max(ends) > path.stat().st_size:
                mb.check_file_holds(path, declared, f"TIFF image {shape} of {dtype}",
                                    min(page.dataoffsets))
    mb.check_alloc(n * max(4, dtype.itemsize), f"TIFF image {str(path)!r} {shape}")


def _check_image_sizes(path: Path, im) -> None:
    """A PNG/JPEG's declared size must fit the import cap (before it is decoded)."""
    w, h = im.size
    bands = len(im.getbands()) if hasattr(im, "getbands") else 4
    mb.check_alloc(w * h * max(bands, 3) * 8, f"image {str(path)!r} ({w}×{h})")


def read_map_image(path: str | os.PathLike) -> np.ndarray:
    """One element map ``(y, x)`` float32 from a single-channel TIFF or PNG.

    Integer images keep their values (8-bit 0…255, 16-bit 0…65535: exporters write counts
    or display levels, the benchmark normalises each element anyway).  A grey image saved
    as RGB(A) is accepted; a false-colour rendering is refused.
    """
    path = Path(path)
    expected = "a single-channel TIFF (8/16-bit integer or 32-bit float) or PNG (8/16-bit)"
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            _check_tiff_sizes(path)
            a = np.asarray(tifffile.imread(path))
        else:
            from PIL import Image

            with Image.open(path) as im:
                _check_image_sizes(path, im)
                im.load()
                mode = im.mode
                a = np.asarray(im)
                if mode == "P":
                    a = np.asarray(im.convert("RGB"))
    except mb.MaxrfError:
        raise
    except Exception as exc:  # noqa: BLE001 - every reader error is a user error here
        raise mb.ScanValidationError(
            f"cannot read element map {str(path)!r}: expected {expected}, found "
            f"{type(exc).__name__}: {exc}") from None
    a = np.squeeze(a)
    if a.ndim == 3 and a.shape[-1] in (2, 3, 4):  # grey+alpha or RGB(A): accept only grey
        colour = a[..., :3] if a.shape[-1] >= 3 else a[..., :1]
        if colour.shape[-1] == 3 and not (np.array_equal(colour[..., 0], colour[..., 1])
                                          and np.array_equal(colour[..., 0], colour[..., 2])):
            raise mb.ScanValidationError(
                f"element map {str(path)!r}: expected {expected}, found a {a.shape[-1]}-channel "
                "colour image (a false-colour rendering is not a map of counts)")
        a = colour[..., 0]
    if a.ndim != 2:
        raise mb.ScanValidationError(
            f"element map {str(path)!r}: expected {expected}, found an array of shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
            or a.dtype == bool):
        raise mb.ScanValidationError(
            f"element map {str(path)!r}: expected {expected}, found dtype {a.dtype}")
    return a.astype(np.float32)


def read_photo(path: str | os.PathLike) -> np.ndarray:
    """The photograph ``(band, y, x)`` float32 in [0, 1], band = R, G, B.

    8-bit and 16-bit images are scaled by their full range, float images must already lie
    in [0, 1].  An alpha channel is dropped; a grey, CMYK or multi-band image is refused.
    """
    path = Path(path)
    expected = "an RGB photograph (JPEG, PNG or TIFF; 8/16-bit, or float in [0, 1])"
    if not path.is_file():
        raise mb.ScanValidationError(f"photograph {str(path)!r} does not exist; expected {expected}")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            _check_tiff_sizes(path)
            a = np.asarray(tifffile.imread(path))
            mode = f"{a.shape[-1] if a.ndim == 3 else 1}-channel TIFF"
        else:
            from PIL import Image

            with Image.open(path) as im:
                _check_image_sizes(path, im)
                im.load()
                mode = f"mode {im.mode}"
                a = np.asarray(im.convert("RGB") if im.mode == "P" else im)
    except mb.MaxrfError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise mb.ScanValidationError(f"cannot read photograph {str(path)!r}: expected {expected}, "
                                     f"found {type(exc).__name__}: {exc}") from None
    if a.ndim == 3 and a.shape[0] in (3, 4) and a.shape[-1] not in (3, 4):
        a = np.moveaxis(a, 0, -1)  # planar TIFF
    if a.ndim != 3 or a.shape[-1] not in (3, 4) or "CMYK" in mode:
        found = "1 channel (grey)" if a.ndim == 2 else f"shape {a.shape}"
        raise mb.ScanValidationError(f"photograph {str(path)!r}: expected {expected}, found "
                                     f"{found} ({mode})")
    a = a[..., :3]
    if a.dtype == np.uint8:
        rgb = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        rgb = a.astype(np.float32) / 65535.0
    elif np.issubdtype(a.dtype, np.floating):
        rgb = a.astype(np.float32)
        if not np.isfinite(rgb).all() or rgb.min() < 0 or rgb.max() > 1:
            raise mb.ScanValidationError(
                f"photograph {str(path)!r}: expected float values in [0, 1], found range "
                f"[{np.nanmin(rgb):.4g}, {np.nanmax(rgb):.4g}]")
    else:
        raise mb.ScanValidationError(f"photograph {str(path)!r}: expected {expected}, found "
                                     f"dtype {a.dtype}")
    return np.ascontiguousarray(np.moveaxis(rgb, -1, 0))


def read_image_folder(folder: str | os.PathLike, *, exclude: Sequence[str | os.PathLike] = ()
                      ) -> tuple[np.ndarray, list[LineLabel], list[Path]]:
    """Element maps ``(element, y, x)``, their parsed labels and files, from a folder.

    Files ending in .tif/.tiff/.png are maps (sorted by name); ``exclude`` (the
    photograph, when it sits in the folder) is skipped.  Every file must read, parse and
    have the size of the others.
    """
    folder = Path(folder)
    skip = {Path(p).resolve() for p in exclude}
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in MAP_SUFFIXES and p.resolve() not in skip
                   and not p.name.startswith("."))
    if not files:
        present = sorted(p.name for p in folder.iterdir())[:8]
        raise mb.ScanValidationError(
            f"{str(folder)!r}: expected element-map images ({', '.join(MAP_SUFFIXES)}), one per "
            f"element, found none (files: {', '.join(present) or 'none'})")
    labels, maps = [], []
    bar = mb.progress_bar(f"reading {len(files)} element maps", unit="map")
    for i, f in enumerate(files):
        try:
            labels.append(parse_label(f.stem))
        except LabelError as exc:
            bar.close()
            raise mb.ScanValidationError(f"element map {f.name!r}: {exc}") from None
        maps.append(read_map_image(f))
        bar(i + 1, len(files), f.name)
    bar.close()
    shapes = {f.name: m.shape for f, m in zip(files, maps)}
    if len(set(shapes.values())) > 1:
        listing = ", ".join(f"{n} {s[0]}×{s[1]}" for n, s in shapes.items())
        raise mb.ScanValidationError(
            f"{str(folder)!r}: expected element maps of one size, found different sizes: {listing}")
    return np.stack(maps), labels, files


def element_names(labels: Sequence[LineLabel], sources: Sequence[str] | None = None) -> list[str]:
    """Scan element names for parsed labels: ``Pb_L``; where two maps share a family
    (``Pb-La`` and ``Pb-Lb``) both keep their sub-line group (``Pb_La``, ``Pb_Lb``)."""
    short = [lab.name for lab in labels]
    names = [lab.long_name if short.count(lab.name) > 1 else lab.name for lab in labels]
    if len(set(names)) < len(names):
        sources = sources or [lab.label for lab in labels]
        clash = {}
        for n, s in zip(names, sources):
            clash.setdefault(n, []).append(str(s))
        dup = "; ".join(f"{n}: {', '.join(s)}" for n, s in clash.items() if len(s) > 1)
        raise mb.ScanValidationError(f"expected one map per element line, found several for {dup}")
    return names


# --- assembling a scan ------------------------------------------------------------------

def _clean_maps(maps: np.ndarray, notes: _Notes) -> np.ndarray:
    """NaN (masked pixels in float exports) → 0 and negative fit values → 0, reported."""
    maps = np.asarray(maps, dtype=np.float32)
    bad = ~np.isfinite(maps)
    if bad.any():
        notes(f"replaced {int(bad.sum())} NaN/Inf map values by 0")
        maps = np.where(bad, 0.0, maps).astype(np.float32)
    neg = maps < 0
    if neg.any():
        notes(f"clipped {int(neg.sum())} negative map values (min {float(maps.min()):.4g}) to 0")
        maps = np.maximum(maps, 0.0)
    return maps


def _infer_scale(photo_shape, lr_shape, scale: int | None, notes: _Notes) -> int:
    ry, rx = photo_shape[0] / lr_shape[0], photo_shape[1] / lr_shape[1]
    if scale is not None:
        if int(scale) < 2:
            raise mb.ConfigError(f"--scale with --lr must be an integer ≥ 2, found {scale}")
        notes(f"scale ×{int(scale)} as given (photograph/maps size ratio {ry:.3f} × {rx:.3f})")
        return int(scale)
    s = int(round((ry + rx) / 2))
    if s < 2:
        raise mb.ConfigError(
            f"--lr: expected a photograph at least twice the size of the maps, found "
            f"{photo_shape[0]}×{photo_shape[1]} vs maps {lr_shape[0]}×{lr_shape[1]} (ratio "
            f"{ry:.2f}×{rx:.2f}); pass --scale N to choose the factor")
    notes(f"scale ×{s} inferred from the photograph/maps size ratio {ry:.3f} × {rx:.3f} (rounded)")
    return s


def build_scan(maps: np.ndarray, labels: Sequence[LineLabel], photo: np.ndarray, *,
               lr: bool = False, scale: int | None = None, register: bool | str = False,
               mask: np.ndarray | None = None, multiple: int = 4,
               pixel_size_mm: float | None = None, title: str = "", source: str = "",
               units: str = "counts", notes: _Notes | None = None, names: list[str] | None = None,
               control_points: str | os.PathLike | None = None,
               homography: str | os.PathLike | np.ndarray | None = None,
               rotate: int = 0, flip: str | None = None, **attrs) -> xr.Dataset:
    """Assemble a scan from maps ``(element, y, x)``, parsed labels and a photograph
    ``(band, Hp, Wp)`` in [0, 1].

    * ``lr=False``: the maps are the ground truth; they are centre-cropped to a multiple of
      ``multiple`` (so that the benchmark's ×4 operator applies; 1 disables) and the
      photograph is resampled onto their grid.
    * ``lr=True``: the maps become ``maps_lr``; the photograph is resampled onto the
      ``scale``× grid (``scale`` inferred from the size ratio when ``None``).
    * ``register``: ``True`` or a model name (``shift``, ``similarity``, ``affine``): the
      photograph is registered to the maps (on the map grid) before it is resampled, and
      the estimate recorded in the attributes ``registration_*``.
    * ``control_points`` (a CSV of ``photo_x,photo_y,map_x,map_y``) or ``homography`` (a
      3×3 matrix or its file, photograph px → map px): the photograph is warped onto the
      map grid through that homography (:mod:`.control_points`); the residual at the points
      is reported; all of it is recorded in the attributes ``registration_*``.
    * ``rotate`` (degrees counter-clockwise) and ``flip`` (``horizontal``/``vertical``)
      orient the maps first (raw Bruker RPL/RAW exports often need it); recorded in
      ``orientation``.
    """
    from . import control_points as cp

    notes = notes or _Notes(None)
    maps = _clean_maps(maps, notes)
    extra: dict = dict(attrs)
    if rotate or (flip and flip != "none"):
        maps, said = cp.orient(maps, rotate, flip)
        if mask is not None:
            mask = cp.orient(mask[None], rotate, flip)[0][0]
        notes(f"maps {said}")
        extra["orientation"] = said
    if sum(x is not None and x is not False for x in (control_points, homography, register or None)) > 1:
        raise mb.ConfigError("expected one way to register the photograph, found several: give "
                             "--register, --control-points or --homography, not more than one")
    if maps.ndim != 3 or maps.shape[0] == 0:
        raise mb.ScanValidationError(f"expected maps (element, y, x) with at least one element, "
                                     f"found shape {maps.shape}")
    names = names or element_names(labels)
    photo = np.asarray(photo, dtype=np.float32)
    h, w = maps.shape[1:]
    if not lr and multiple > 1 and (h % multiple or w % multiple):
        nh, nw = h - h % multiple, w - w % multiple
        top, left = (h - nh) // 2, (w - nw) // 2
        notes(f"maps {h}×{w} centre-cropped to {nh}×{nw} (a multiple of {multiple}): rows "
              f"{top}:{top + nh}, columns {left}:{left + nw}")
        extra["crop_px"] = [int(top), int(left), int(h - nh - top), int(w - nw - left)]
    else:
        top, left, nh, nw = 0, 0, h, w
    s = _infer_scale(photo.shape[1:], (h, w), scale, notes) if lr else 1

    offset, matrix, warp = (0.0, 0.0), None, None
    if control_points is not None:
        photo_xy, map_xy = cp.read_control_points(control_points)
        warp, residuals = cp.estimate_homography(photo_xy, map_xy)
        rms, worst = float(np.sqrt(np.mean(residuals ** 2))), float(residuals.max())
        if len(photo_xy) == 4:
            notes(f"homography from 4 control-point pairs ({control_points}): exactly determined, "
                  "no residual to check (give more pairs to measure the fit)")
        else:
            notes(f"homography from {len(photo_xy)} control-point pairs ({control_points}): "
                  f"residual at the points {rms:.3g} map px RMS, {worst:.3g} max")
        if worst > 2.0:
            notes(f"warning: a control point lies {worst:.1f} map px from where the homography "
                  "puts it; check the pairs (a swapped x/y, a mistyped value)")
        extra.update(registration_method="control-points (homography, least squares)",
                     registration_control_points=np.c_[photo_xy, map_xy].tolist(),
                     registration_residual_px_rms=rms, registration_residual_px_max=worst)
    elif homography is not None:
        warp = (np.asarray(homography, dtype=float) if not isinstance(homography, (str, os.PathLike))
                else cp.read_homography(homography))
        notes(f"homography given ({homography if isinstance(homography, (str, os.PathLike)) else 'matrix'}): "
              "photograph px → map px")
        extra["registration_method"] = "homography (given)"
    if warp is not None:
        extra["registration_homography"] = warp.tolist()
        extra["registration_convention"] = ("photograph px → map px; x = column, y = row, centre "
                                            "of the top-left pixel at (0, 0)")
    elif register:
        model = "shift" if register is True else str(register)
        if model not in MODELS:
            raise mb.ConfigError(f"registration model must be one of {', '.join(MODELS)}, "
                                 f"found {model!r}")
        on_grid = resample_photo(photo, (h, w))
        reg: Registration = estimate_offset(maps, on_grid, mask=mask, model=model)
        offset, matrix = reg.offset, reg.matrix
        notes(reg.describe())
        extra.update(reg.attrs())
    else:
        extra["registration_method"] = "none"
    # resample once from the original photograph, on the full map grid, then crop
    if warp is not None:
        rgb, outside = cp.warp_photo(photo, warp, (h, w), upsample=s)
        if outside > 0.01:
            notes(f"warning: {100 * outside:.1f} % of the map grid lies outside the photograph "
                  "(filled from its nearest edge)")
    else:
        rgb = resample_photo(photo, (h, w), upsample=s, offset=offset, matrix=matrix)
    rgb = rgb[:, top * s:(top + nh) * s, left * s:(left + nw) * s]
    if photo.shape[1:] != rgb.shape[1:] or register or warp is not None:
        notes(f"photograph {photo.shape[1]}×{photo.shape[2]} px resampled onto the "
              f"{'×%d ' % s if lr else ''}map grid {rgb.shape[1]}×{rgb.shape[2]} "
              f"(factors {rgb.shape[1] / photo.shape[1]:.4f} × {rgb.shape[2] / photo.shape[2]:.4f},"
              f" cubic, anti-aliased{', registered' if register else ''}"
              f"{', warped through the homography' if warp is not None else ''})")
    ry, rx = photo.shape[1] / h, photo.shape[2] / w
    if abs(ry / rx - 1) > 0.02 and warp is None:
        notes(f"warning: the photograph's aspect ratio differs from the maps' by "
              f"{100 * abs(ry / rx - 1):.1f} % (size ratios {ry:.3f} × {rx:.3f}); "
              "is it the same field of view?")
    maps = maps[:, top:top + nh, left:left + nw]
    kw = {"maps_lr": maps} if lr else {"maps": maps}
    extra["import_notes"] = "\n".join(notes.lines)
    return mb.make_scan(rgb=rgb, elements=names, element_labels=[lab.label for lab in labels],
                        pixel_size_mm=(pixel_size_mm * (1 if not lr else 1.0 / s)
                                       if pixel_size_mm else None),
                        title=title, source=source, units=units, **kw, **extra)


# --- public importers --------------------------------------------------------------------

def import_image_folder(path: str | os.PathLike, rgb: str | os.PathLike, *, lr: bool = False,
                        scale: int | None = None, register: bool | str = False,
                        pixel_size_mm: float | None = None, title: str = "", multiple: int = 4,
                        echo: Echo | None = None, **geometry) -> xr.Dataset:
    """A scan from a folder of element-map images and a photograph file (see module doc).

    ``pixel_size_mm`` is the pixel size of the maps.  Returns the validated scan."""
    path = Path(path)
    if not path.is_dir():
        raise mb.ScanValidationError(f"{str(path)!r}: expected a folder of element-map images")
    notes = _Notes(echo)
    photo = read_photo(rgb)
    maps, labels, files = read_image_folder(path, exclude=[rgb])
    names = element_names(labels, [f.name for f in files])
    notes(f"read {len(files)} element maps {maps.shape[1]}×{maps.shape[2]} from {path}: "
          + ", ".join(f"{f.name} → {n}" for f, n in zip(files, names)))
    return build_scan(maps, labels, photo, lr=lr, scale=scale, register=register,
                      multiple=multiple, pixel_size_mm=pixel_size_mm,
                      title=title or path.name, source=f"image folder {path}; photograph {rgb}",
                      units="as exported (image values)", notes=notes, names=names, **geometry)


@dataclass
class RawCube:
    """A spectral cube: ``counts`` ``(y, x, channel)``, ``energy_kev`` ``(channel,)``, the
    detector FWHM at Mn Kα in eV when the file gives it, and what the header said."""

    counts: np.ndarray
    energy_kev: np.ndarray
    fwhm_mnka_ev: float | None = None
    calibration: str = ""
    meta: dict = field(default_factory=dict)


def _parse_calibration(calibration) -> tuple[float, float, str]:
    """``OFFSET,GAIN`` in keV and keV/channel; a gain > 0.5 is read as eV (no detector has
    0.5 keV channels), then both values are eV."""
    if isinstance(calibration, str):
        try:
            offset, gain = (float(v) for v in calibration.split(","))
        except ValueError:
            raise mb.ConfigError(f"--calibration expects OFFSET,GAIN (keV, keV/channel), found "
                                 f"{calibration!r}") from None
    else:
        offset, gain = (float(v) for v in calibration)
    unit = "keV"
    if gain > 0.5:
        offset, gain, unit = offset / 1000.0, gain / 1000.0, "eV (converted)"
    if gain <= 0:
        raise mb.ConfigError(f"--calibration gain must be positive, found {gain}")
    return offset, gain, unit


#: bytes per value while a cube is integrated (its float64 cumulative sums)
_WORK_BYTES = 8


def _rpl_header(path: Path) -> dict[str, str]:
    header = {}
    with open(path, "rb") as f:
        text = f.read(1 << 16).decode("latin-1")
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and not parts[0].startswith(";"):
            header[parts[0].lower()] = parts[1].strip()
    return header


def _check_rpl_sizes(rpl: Path) -> None:
    """The cube an RPL header declares must fit its .raw file and the import cap."""
    try:
        header = _rpl_header(rpl)
        w, h, d = (int(header[k]) for k in ("width", "height", "depth"))
        length = int(header.get("data-length", "1"))
        offset = int(header.get("offset", "0") or 0)
    except (OSError, KeyError, ValueError):
        return  # not a header we can read: the reader says why
    if min(w, h, d, length) < 1 or offset < 0:
        raise mb.ScanValidationError(f"RPL header {str(rpl)!r}: expected positive width, height, "
                                     f"depth and data-length, found {w}, {h}, {d}, {length}")
    raws = [p for p in (rpl.with_suffix(".raw"), rpl.with_suffix(".RAW")) if p.exists()]
    if raws:
        mb.check_file_holds(raws[0], w * h * d * length,
                            f"RPL header {rpl.name!r} ({h}×{w} pixels × {d} channels of "
                            f"{length} byte{'s' if length > 1 else ''})", offset)
    mb.check_alloc(w * h * d * _WORK_BYTES, f"the cube of {rpl.name!r} ({h}×{w}×{d})")


def _check_bcf_sizes(bcf: Path) -> None:
    """The hypermap a BCF header declares must fit the import cap."""
    try:
        from rsciio.bruker._api import BCF_reader

        header = BCF_reader(str(bcf)).header
        h, w = int(header.image.height), int(header.image.width)
        d = max(int(s.data.size) for s in header.spectra_data.values())
    except Exception:  # noqa: BLE001 - not a header we can read: the reader says why
        return
    mb.check_alloc(h * w * d * (4 + _WORK_BYTES), f"the hypermap of {bcf.name!r} ({h}×{w}×{d})")


def read_raw_cube(path: str | os.PathLike, *, calibration=None) -> RawCube:
    """Read an RPL/RAW or BCF spectral cube with rosettasciio and its energy calibration.

    The energy axis must be calibrated: an RPL header with ``depth-scale``/``depth-origin``
    in eV or keV (HyperSpy style) or ``ev-per-chan`` (original Lispix: offset 0), or a
    BCF.  Otherwise pass ``calibration=(offset_keV, gain_keV_per_channel)``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".raw":
        rpl = [p for p in (path.with_suffix(".rpl"), path.with_suffix(".RPL")) if p.exists()]
        if not rpl:
            raise mb.ScanValidationError(f"{str(path)!r}: expected an .rpl header next to the .raw "
                                         "file (Lispix ripple format), found none")
        path = rpl[0]
        suffix = ".rpl"
    if not path.is_file():
        raise mb.ScanValidationError(f"{str(path)!r} does not exist; expected a spectral cube")
    # bounded: the declared sizes against the files and the cap, before anything is read
    if suffix == ".rpl":
        _check_rpl_sizes(path)
    elif suffix == ".bcf":
        _check_bcf_sizes(path)
    try:
        if suffix == ".rpl":
            from rsciio.ripple import file_reader

            signals = file_reader(str(path))
        elif suffix == ".bcf":
            from rsciio.bruker import file_reader

            signals = file_reader(str(path), select_type="spectrum_image")
        else:
            raise mb.ScanValidationError(f"{str(path)!r}: expected a .rpl/.raw or .bcf spectral "
                                         f"cube, found suffix {suffix!r}")
    except mb.MaxrfError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise mb.ScanValidationError(f"cannot read spectral cube {str(path)!r}: "
                                     f"{type(exc).__name__}: {exc}") from None
    cubes = [s for s in signals if np.ndim(s["data"]) == 3]
    if not cubes:
        raise mb.ScanValidationError(f"{str(path)!r}: expected a 3-D spectral cube (y, x, "
                                     f"channel), found arrays of shapes "
                                     f"{[np.shape(s['data']) for s in signals]}")
    sig = cubes[0]
    axes = sig["axes"]
    e_axis = next((a for a in axes if not a.get("navigate", True)), axes[-1])
    counts = np.moveaxis(np.asarray(sig["data"]), e_axis["index_in_array"], -1)
    n = counts.shape[-1]
    header = sig.get("original_metadata", {}) or {}
    units = str(e_axis.get("units") or "").strip()
    if calibration is not None:
        offset, gain, unit = _parse_calibration(calibration)
        how = f"given: E = {offset:.5g} keV + {gain:.6g} keV × channel ({unit})"
    elif units in ("keV", "eV"):
        k = 1.0 if units == "keV" else 1e-3
        offset, gain = float(e_axis.get("offset", 0.0)) * k, float(e_axis["scale"]) * k
        how = f"from the file: E = {offset:.5g} keV + {gain:.6g} keV × channel"
    elif suffix == ".rpl" and "depth-scale" not in header and float(header.get("ev-per-chan", 0) or 0) > 0:
        offset, gain = 0.0, float(header["ev-per-chan"]) / 1000.0
        how = f"from ev-per-chan (offset 0): E = {gain:.6g} keV × channel"
    else:
        raise mb.ScanValidationError(
            f"{str(path)!r} has no energy calibration: expected an energy axis in eV or keV "
            f"(RPL depth-scale/depth-origin/depth-units, or ev-per-chan), found scale "
            f"{e_axis.get('scale')} with units {units or 'none'}; pass --calibration "
            "OFFSET_KEV,GAIN_KEV_PER_CHANNEL")
    fwhm = None
    md = sig.get("metadata", {}) or {}
    for inst in ("SEM", "TEM"):
        res = (md.get("Acquisition_instrument", {}).get(inst, {}).get("Detector", {})
               .get("EDS", {}).get("energy_resolution_MnKa"))
        if res:
            fwhm = float(res)
    return RawCube(counts, offset + gain * np.arange(n), fwhm, how, dict(header))


def integrate_lines(counts: np.ndarray, energy_kev: np.ndarray, labels: Sequence[LineLabel], *,
                    fwhm_mnka_ev: float = DEFAULT_FWHM_MNKA_EV, background: bool = True
                    ) -> tuple[np.ndarray, list[tuple[float, float, float]]]:
    """Element maps ``(element, y, x)`` (counts) from a cube ``(y, x, channel)``.

    Each line is integrated over the channels whose centre lies in its window
    (:func:`~.labels.line_window_kev`: ±1 FWHM beyond the line group).  With
    ``background``, a straight line through the mean counts of the two side windows (each
    one FWHM wide, just outside the window) is subtracted per pixel, the continuum under
    the peak; the result is clipped at 0.  Returns the maps and the windows (keV).
    """
    counts = np.asarray(counts)
    e = np.asarray(energy_kev, dtype=float)
    # cumulative sums over the energy axis, a block of rows at a time (with a progress bar:
    # reading a memory-mapped cube of a large painting is the slow step of an import)
    cum = np.zeros(counts.shape[:2] + (counts.shape[2] + 1,), dtype=np.float64)
    rows, step = counts.shape[0], 32
    bar = mb.progress_bar("integrating the spectral cube", unit="row")
    for y0 in range(0, rows, step):
        np.cumsum(counts[y0:y0 + step], axis=-1, dtype=np.float64, out=cum[y0:y0 + step, :, 1:])
        bar(min(y0 + step, rows), rows)
    bar.close()

    def band(lo, hi):  # summed counts and channel count of channels with centre in [lo, hi)
        i0, i1 = np.searchsorted(e, lo), np.searchsorted(e, hi)
        return cum[..., i1] - cum[..., i0], i1 - i0, (i0, i1)

    maps, windows = [], []
    for lab in labels:
        lo, centre, hi = line_window_kev(lab, fwhm_mnka_ev)
        if lo < e[0] or hi > e[-1]:
            raise mb.ScanValidationError(
                f"line {lab.label!r} ({lab.long_name}, window {lo:.3f}–{hi:.3f} keV) lies outside "
                f"the calibrated energy range {e[0]:.3f}–{e[-1]:.3f} keV; check the calibration")
        total, n, (i0, i1) = band(lo, hi)
        if n == 0:
            raise mb.ScanValidationError(f"line {lab.label!r}: its window {lo:.3f}–{hi:.3f} keV "
                                         "holds no channel; check the calibration")
        if background:
            width = hi - lo
            left, nl, _ = band(lo - width / 2, lo)
            right, nr, _ = band(hi, hi + width / 2)
            if nl and nr:
                # continuum per channel, linear between the side-window centres
                bl, br = left / nl, right / nr
                el, er = lo - width / 4, hi + width / 4
                mid = e[i0:i1].mean()
                total = total - n * (bl + (br - bl) * (mid - el) / (er - el))
        maps.append(np.maximum(total, 0.0))
        windows.append((lo, centre, hi))
    return np.stack(maps).astype(np.float32), windows


def import_raw_cube(path: str | os.PathLike, rgb: str | os.PathLike, *,
                    elements: str | Sequence[str] | None = None, calibration=None,
                    fwhm_mnka_ev: float | None = None, background: bool = True,
                    lr: bool = False, scale: int | None = None, register: bool | str = False,
                    pixel_size_mm: float | None = None, title: str = "", multiple: int = 4,
                    echo: Echo | None = None, **geometry) -> xr.Dataset:
    """A scan from a raw spectral cube (RPL/RAW, BCF) integrated into element maps.

    ``elements`` lists the lines to map (labels as in file names: ``Fe,Cu,Pb_L,Hg_La``).
    ``fwhm_mnka_ev`` overrides the detector resolution (else the file's, else 145 eV)."""
    notes = _Notes(echo)
    if not elements:
        raise mb.ConfigError("a raw spectral cube needs the lines to map: expected --elements "
                             "such as 'Ca,Fe,Cu,Zn,Hg_L,Pb_L', found none")
    if isinstance(elements, str):
        elements = [e for e in elements.replace(";", ",").split(",") if e.strip()]
    try:
        labels = [parse_label(e.strip()) for e in elements]
    except LabelError as exc:
        raise mb.ConfigError(f"--elements: {exc}") from None
    names = element_names(labels)
    photo = read_photo(rgb)
    cube = read_raw_cube(path, calibration=calibration)
    fwhm = fwhm_mnka_ev or cube.fwhm_mnka_ev or DEFAULT_FWHM_MNKA_EV
    notes(f"read cube {cube.counts.shape[0]}×{cube.counts.shape[1]}×{cube.counts.shape[2]} "
          f"channels from {path}; calibration {cube.calibration}; detector FWHM {fwhm:.0f} eV at Mn Kα")
    maps, windows = integrate_lines(cube.counts, cube.energy_kev, labels, fwhm_mnka_ev=fwhm,
                                    background=background)
    notes("integrated " + ", ".join(f"{n} {lo:.2f}–{hi:.2f} keV" for n, (lo, _, hi)
                                    in zip(names, windows))
          + (" (linear background subtracted)" if background else " (no background subtraction)"))
    return build_scan(maps, labels, photo, lr=lr, scale=scale, register=register,
                      multiple=multiple, pixel_size_mm=pixel_size_mm, title=title or Path(path).stem,
                      source=f"spectral cube {path}; photograph {rgb}", units="counts",
                      notes=notes, names=names,
                      line_windows_kev=[[round(v, 4) for v in w] for w in windows],
                      detector_fwhm_mnka_ev=float(fwhm), **geometry)


def _check_h5_sizes(path: Path, dset, key: str) -> None:
    """An HDF5 dataset's declared shape must fit its file (when stored uncompressed) and the cap."""
    shape = tuple(int(n) for n in (dset.shape or ()))
    n = int(np.prod(shape, dtype=np.float64)) if shape else 1
    if dset.chunks is None and dset.compression is None and n:
        offset = dset.id.get_offset()
        if offset is not None:
            mb.check_file_holds(path, n * dset.dtype.itemsize,
                                f"HDF5 dataset {key!r} {shape} of {dset.dtype}", offset)
    mb.check_alloc(n * max(4, dset.dtype.itemsize), f"HDF5 dataset {key!r} {shape}")


def read_pyxrf_h5(path: str | os.PathLike) -> tuple[np.ndarray, list[LineLabel], list[str]]:
    """Element maps ``(element, y, x)``, labels and skipped channel names from a PyXRF
    HDF5 file (``xrfmap/detsum/xrf_fit`` and ``xrf_fit_name``; ``xrf_roi`` as fallback).
    Channels that are not element lines (``compton``, ``elastic``, pile-ups…) are skipped."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            for data_key, name_key in (("xrfmap/detsum/xrf_fit", "xrfmap/detsum/xrf_fit_name"),
                                       ("xrfmap/detsum/xrf_roi", "xrfmap/detsum/xrf_roi_name")):
                if data_key in f and name_key in f:
                    _check_h5_sizes(path, f[data_key], data_key)
                    data = np.asarray(f[data_key][()], dtype=np.float32)
                    raw = f[name_key][()]
                    break
            else:
                raise mb.ScanValidationError(
                    f"{str(path)!r}: expected PyXRF datasets 'xrfmap/detsum/xrf_fit' and "
                    f"'xrfmap/detsum/xrf_fit_name', found top-level groups {sorted(f.keys())}")
    except mb.MaxrfError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise mb.ScanValidationError(f"cannot read HDF5 file {str(path)!r}: "
                                     f"{type(exc).__name__}: {exc}") from None
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.ravel(raw)]
    if data.ndim != 3 or data.shape[0] != len(names):
        raise mb.ScanValidationError(f"{str(path)!r}: expected xrf_fit (element, y, x) with one "
                                     f"name per element, found shape {data.shape} and "
                                     f"{len(names)} names")
    keep, labels, skipped = [], [], []
    for i, n in enumerate(names):
        try:
            labels.append(parse_label(n, strict=True))
            keep.append(i)
        except LabelError:
            skipped.append(n)
    if not keep:
        raise mb.ScanValidationError(f"{str(path)!r}: expected element lines such as 'Pb_L' "
                                     f"among the channels, found only {names}")
    return data[keep], labels, skipped


def import_pyxrf_h5(path: str | os.PathLike, rgb: str | os.PathLike, *, lr: bool = False,
                    scale: int | None = None, register: bool | str = False,
                    pixel_size_mm: float | None = None, title: str = "", multiple: int = 4,
                    echo: Echo | None = None, **geometry) -> xr.Dataset:
    """A scan from fitted maps in a PyXRF HDF5 file and a photograph."""
    notes = _Notes(echo)
    photo = read_photo(rgb)
    maps, labels, skipped = read_pyxrf_h5(path)
    names = element_names(labels)
    notes(f"read {len(labels)} fitted maps {maps.shape[1]}×{maps.shape[2]} from {path}: "
          f"{', '.join(names)}" + (f"; skipped non-element channels {', '.join(skipped)}"
                                   if skipped else ""))
    return build_scan(maps, labels, photo, lr=lr, scale=scale, register=register,
                      multiple=multiple, pixel_size_mm=pixel_size_mm,
                      title=title or Path(path).stem, source=f"PyXRF HDF5 {path}; photograph {rgb}",
                      units="fitted counts", notes=notes, names=names, **geometry)


def import_source(source: str | os.PathLike, rgb: str | os.PathLike, **kw) -> xr.Dataset:
    """Detect what ``source`` is (folder, .rpl/.raw/.bcf, .h5) and import it."""
    p = Path(source)
    suffix = p.suffix.lower()
    cube_only = {k: kw.pop(k) for k in ("elements", "calibration", "fwhm_mnka_ev", "background")
                 if k in kw}
    if p.is_dir():
        used = [k for k, v in cube_only.items() if v not in (None, True)]
        if used:
            raise mb.ConfigError(f"options {', '.join(used)} apply to raw spectral cubes only; "
                                 f"{str(p)!r} is a folder of images")
        return import_image_folder(p, rgb, **kw)
    if not p.exists():
        raise mb.ScanValidationError(f"{str(p)!r} does not exist; expected a folder of element-map "
                                     "images, a .rpl/.raw/.bcf spectral cube or a PyXRF .h5 file")
    if suffix in CUBE_SUFFIXES:
        return import_raw_cube(p, rgb, **cube_only, **kw)
    if suffix in H5_SUFFIXES:
        return import_pyxrf_h5(p, rgb, **kw)
    raise mb.ScanValidationError(f"{str(p)!r}: expected a folder of element-map images, a "
                                 f".rpl/.raw/.bcf spectral cube or a PyXRF .h5 file, found a "
                                 f"{suffix or 'suffix-less'} file")


# --- command line --------------------------------------------------------------------------

@mb.hookimpl
def maxrf_bench_register_commands(cli):
    import click

    @cli.command("import")
    @click.argument("source", type=click.Path())
    @click.option("--rgb", "rgb", required=True, type=click.Path(),
                  help="The photograph (JPEG/PNG/TIFF, RGB).")
    @click.option("--out", "-o", "out", required=True, type=click.Path(),
                  help="The scan store to write (SCAN.zarr).")
    @click.option("--lr", is_flag=True,
                  help="The maps are a measured low-resolution scan and the photograph the "
                       "high resolution: write maps_lr (no ground truth).")
    @click.option("--short-dwell", "short_dwell", is_flag=True,
                  help="The maps are an HR-step scan of a shorter dwell (the photograph on their "
                       "grid): write them as maps_dwell and their --scale × --scale block means as "
                       "maps_lr (no ground truth); the variant +F fuses a method's output with them.")
    @click.option("--gain-cv", "gain_cv", type=float, default=None,
                  help="The scanner's multiplicative noise beyond Poisson (std of a per-pixel gain, "
                       "e.g. 0.025; measure it from a repeat scan): recorded as scanner_gain_cv, "
                       "which +F and the counts noise model add to the Poisson variance.")
    @click.option("--scale", type=int, default=None,
                  help="With --lr: the HR/LR factor (default: the photograph/maps size ratio, "
                       "rounded). With --short-dwell: the binning (default 4).")
    @click.option("--register", "register", is_flag=True,
                  help="Register the photograph to the maps (gradient-magnitude correlation).")
    @click.option("--register-model", type=click.Choice(MODELS), default="shift", show_default=True,
                  help="Transform estimated by --register.")
    @click.option("--pixel-size", "pixel_size", type=float, default=None,
                  help="Pixel size of the maps in millimetres.")
    @click.option("--title", default="", help="Title of the scan.")
    @click.option("--multiple", type=int, default=4, show_default=True,
                  help="Without --lr: centre-crop the maps to a multiple of this (1: no crop).")
    @click.option("--elements", default=None,
                  help="Raw cubes: lines to map, e.g. 'Ca,Fe,Cu,Hg_L,Pb_L,Pb_Lb'.")
    @click.option("--calibration", default=None, metavar="OFFSET,GAIN",
                  help="Raw cubes: energy calibration E = OFFSET + GAIN × channel (keV).")
    @click.option("--fwhm", type=float, default=None,
                  help=f"Raw cubes: detector FWHM at Mn Kα in eV (default: the file's, else "
                       f"{DEFAULT_FWHM_MNKA_EV:.0f}).")
    @click.option("--no-background", is_flag=True, help="Raw cubes: no linear background under the lines.")
    @click.option("--control-points", "control_points", type=click.Path(), default=None,
                  help="CSV of clicked point pairs, columns photo_x,photo_y,map_x,map_y (pixels, "
                       "centre of the top-left pixel = 0,0; at least 4): warp the photograph onto "
                       "the maps through the fitted homography.")
    @click.option("--homography", type=click.Path(), default=None,
                  help="A known 3×3 homography, photograph px → map px (3 rows of 3 numbers, "
                       "JSON or .npy): warp the photograph through it.")
    @click.option("--rotate", type=click.Choice(["0", "90", "180", "270"]), default="0",
                  show_default=True, help="Rotate the maps counter-clockwise first (raw exports).")
    @click.option("--flip", type=click.Choice(["none", "horizontal", "vertical"]), default="none",
                  show_default=True, help="Then mirror the maps left↔right (horizontal) or "
                                          "top↔bottom (vertical).")
    def import_(source, rgb, out, lr, short_dwell, gain_cv, scale, register, register_model,
                pixel_size, title, multiple, elements, calibration, fwhm, no_background,
                control_points, homography, rotate, flip):
        """Import SOURCE (a folder of element-map images, a .rpl/.bcf cube, a PyXRF .h5)
        with the photograph --rgb into a scan store."""
        if lr and short_dwell:
            raise mb.ConfigError("expected one of --lr (the maps are a coarse scan) and --short-dwell "
                                 "(the maps are an HR-step scan to bin), found both")
        if scale is not None and not (lr or short_dwell):
            raise mb.ConfigError("--scale applies with --lr or --short-dwell only (the maps' own "
                                 "grid is used otherwise)")
        if short_dwell and scale is not None and scale < 2:
            raise mb.ConfigError(f"--short-dwell bins the maps by --scale: expected at least 2, "
                                 f"found {scale}")
        # the ownership rule before any work: a new path, an empty folder or a scan store
        mb.check_output(out, kind="scan store", owned=mb.owned_scan, inputs=[source, rgb])
        kw = dict(lr=lr, scale=scale, register=register_model if register else False,
                  pixel_size_mm=pixel_size, title=title, multiple=multiple,
                  echo=lambda s: click.echo(s), control_points=control_points,
                  homography=homography, rotate=int(rotate), flip=flip)
        if elements is not None or calibration is not None or fwhm is not None or no_background:
            kw.update(elements=elements, calibration=calibration, fwhm_mnka_ev=fwhm,
                      background=not no_background)
        scan = import_source(source, rgb, **kw)
        if gain_cv is not None:  # validated with the rest when the store is saved
            scan.attrs["scanner_gain_cv"] = float(gain_cv)
        if short_dwell:
            scan = mb.bin_short_dwell(scan, scale or 4)
        mb.save_scan(scan, out, inputs=[source, rgb])
        var = "maps_lr" if lr else "maps_dwell" if short_dwell else "maps"
        shape = scan[var].shape
        binned = (f" (binned {scan.attrs['scale']}× into maps_lr "
                  f"{scan['maps_lr'].shape[1]}×{scan['maps_lr'].shape[2]})" if short_dwell else "")
        click.echo(f"wrote {out}: {var} {shape[0]} elements × {shape[1]}×{shape[2]}{binned}, rgb "
                   f"{scan['rgb'].shape[1]}×{scan['rgb'].shape[2]} "
                   f"({', '.join(str(e) for e in scan['element'].values)})")
