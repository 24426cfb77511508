"""Readers are bounded: what one import may allocate, and declared sizes checked first.

A file's header declares its sizes (an RPL header its cube's width, height and depth; a
TIFF, PNG or HDF5 dataset its shape; a Zarr store its arrays' shapes).  Every reader of
maxrf-bench checks them **before** it allocates or memory-maps anything:

* a declared size that the file cannot hold (an RPL header that declares 73 GB beside a
  1 MB .raw file) is refused at once (:func:`check_file_holds`);
* what the import would allocate is compared with **one cap for every import**
  (:func:`check_alloc`), stated in the error.  The cap is half the machine's physical
  memory (8 GiB where that cannot be read); set ``MAXRF_BENCH_MAX_IMPORT_BYTES`` (bytes,
  or with a unit: ``64G``, ``512M``) to change it.

Both raise :class:`~maxrf_bench.ScanValidationError` (exit 2, one line).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import ConfigError, ScanValidationError

CAP_ENV = "MAXRF_BENCH_MAX_IMPORT_BYTES"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

__all__ = ["CAP_ENV", "check_alloc", "check_file_holds", "import_cap", "human_bytes"]


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def import_cap() -> int:
    """The most bytes one import may allocate: ``$MAXRF_BENCH_MAX_IMPORT_BYTES``, else half
    the physical memory (8 GiB when it cannot be read)."""
    text = os.environ.get(CAP_ENV, "").strip()
    if text:
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", text, re.IGNORECASE)
        if not m or float(m.group(1)) <= 0:
            raise ConfigError(f"{CAP_ENV} expects a positive number of bytes (e.g. 34359738368 or "
                              f"32G), found {text!r}")
        return int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2)
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def check_alloc(nbytes: float, what: str) -> None:
    """Refuse an import that would allocate more than :func:`import_cap`."""
    cap = import_cap()
    if nbytes > cap:
        raise ScanValidationError(
            f"{what} would need {human_bytes(nbytes)} of memory, more than the {human_bytes(cap)} "
            f"one import may allocate (half the memory; set {CAP_ENV}, e.g. {CAP_ENV}=64G, when "
            "the machine has the memory and the sizes are right)")


def check_file_holds(path: str | os.PathLike, declared: int, what: str, offset: int = 0) -> None:
    """Refuse a header whose declared data (``declared`` bytes from ``offset``) is larger than
    the file ``path`` really is."""
    try:
        size = Path(path).stat().st_size
    except OSError as exc:
        raise ScanValidationError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if offset + declared > size:
        raise ScanValidationError(
            f"{what} declares {human_bytes(declared)} of data, but {str(path)!r} holds "
            f"{human_bytes(max(size - offset, 0))}; expected a header that matches its data file "
            "(a truncated file, or the header of another scan)")
